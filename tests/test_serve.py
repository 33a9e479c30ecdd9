"""The real server: `tts-serve` started as its own process on the tiny engines (Ray Serve, its
HTTP proxy, one replica), called over HTTP with the standard library's client. Checks the audio
(rate, length, formats), streaming, saved voices, errors (400 naming the rule, 429 when full),
a client that goes away, health/readiness/metrics and a clean shutdown (SIGTERM: exit 0, no
process of its session left)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray", reason="the server tests need the serve extra (in dev)")
import soundfile as sf  # noqa: E402

from indextts_trt.runtime.demo_audio import synth_voice_prompt  # noqa: E402

MODEL = "indextts-2"
HOP, SR = 256, 22050


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(engine_dir, tmp_path_factory):
    """One server for the module (Ray's start-up is the slow part); the last test stops it."""
    port = _free_port()
    voices = tmp_path_factory.mktemp("voices")
    log = open(tmp_path_factory.mktemp("serve") / "serve.log", "w+")
    cmd = [sys.executable, "-m", "indextts_trt.runtime.serve.cli", "--engine-dir", str(engine_dir), "--port",
           str(port), "--voices-dir", str(voices), "--max-active", "2", "--max-queue", "1", "--threads", "1",
           "--max-input-chars", "200"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        log.seek(0)
        if "serving " in log.read():
            break
        time.sleep(0.5)
    log.seek(0)
    assert proc.poll() is None and time.time() < deadline, log.read()[-3000:]
    yield {"proc": proc, "port": port, "log": log}
    if proc.poll() is None:  # a test failed before the shutdown test: stop what we started
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    log.close()


def _call(server, method: str, path: str, body=None, headers=None, timeout: float = 300):
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request(method, path, data, headers or {})
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


def _speech(server, **fields):
    return _call(server, "POST", "/v1/audio/speech", {"model": MODEL, **fields}, {"Content-Type": "application/json"})


def _wav(seconds: float, seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synth_voice_prompt(seconds, SR, seed=seed), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


QUICK = {"max_codes": 20, "min_codes": 20, "diffusion_steps": 3}  # exactly 20 codes: floor(1.72·20) = 34 frames


def test_a_wav_comes_back_at_the_models_rate_and_length(server):
    status, headers, body = _speech(server, input="Hello world.", voice="default", **QUICK)
    assert status == 200, body[:300]
    wav, sr = sf.read(io.BytesIO(body), dtype="int16")
    assert sr == SR == int(headers["x-sample-rate"]) and headers["content-type"] == "audio/wav"
    assert wav.shape == (34 * HOP,) and np.abs(wav).max() > 0
    for fmt in ("flac", "mp3"):
        status, headers, body = _speech(server, input="Hello world.", response_format=fmt, **QUICK)
        assert status == 200 and headers["content-type"] in ("audio/flac", "audio/mpeg")
        got, sr = sf.read(io.BytesIO(body), dtype="int16")
        assert sr == SR and (got.shape == wav.shape if fmt == "flac" else abs(got.size - wav.size) <= 2 * 1152)
    status, _, body = _speech(server, input="Hello world.", response_format="pcm", **QUICK)
    pcm = np.frombuffer(body, "<i2")
    assert status == 200 and np.array_equal(pcm, wav)  # the same seed, the same samples


def test_streamed_chunks_join_to_the_whole_audio(server):
    fields = dict(input="Hello there. This is it.", max_segment_tokens=8, **QUICK)  # two segments
    status, _, whole = _speech(server, response_format="pcm", **fields)
    assert status == 200
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=300)
    conn.request("POST", "/v1/audio/speech", json.dumps({"model": MODEL, "stream": True, **fields}))
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("transfer-encoding") == "chunked"
    pieces = []
    while piece := r.read1(1 << 16):
        pieces.append(piece)
    conn.close()
    streamed = b"".join(pieces)
    assert streamed[:4] == b"RIFF" and streamed[36:40] == b"data"  # a WAV header of unknown length
    assert streamed[44:] == whole and len(pieces) >= 2
    status, _, chunked = _speech(server, response_format="pcm", stream_chunk_codes=8, stream_overlap_codes=2, **fields)
    assert status == 200 and len(chunked) == len(whole)  # code-chunk streaming: the same length


def test_saved_voices_upload_list_use_delete(server):
    status, _, body = _call(server, "POST", "/v1/voices/alice", _wav(2.0, 5))
    assert status == 201, body
    assert _call(server, "POST", "/v1/voices/alice", _wav(2.0, 5))[0] == 409
    names = [v["name"] for v in json.loads(_call(server, "GET", "/v1/voices")[2])["voices"]]
    assert names == ["default", "alice"]
    alice = _speech(server, input="Hello world.", voice="alice", **QUICK)
    default = _speech(server, input="Hello world.", voice="default", **QUICK)
    assert alice[0] == 200 and alice[2] != default[2]  # another speaker, other audio
    assert _call(server, "DELETE", "/v1/voices/alice")[0] == 204
    assert _call(server, "DELETE", "/v1/voices/alice")[0] == 404
    status, _, body = _speech(server, input="Hello world.", voice="alice")
    assert status == 400 and "no saved voice" in json.loads(body)["error"]["message"]
    for name, audio, says in (("default", _wav(2.0, 1), "built-in"), ("bob", b"not audio at all", "cannot read the "
                              "upload as audio"), ("carol", _wav(0.2, 1), "at least 0.5")):
        status, _, body = _call(server, "POST", f"/v1/voices/{name}", audio)
        assert status == 400 and says in json.loads(body)["error"]["message"], body


SHORT_EMOTION = base64.b64encode(_wav(0.2, 2)).decode()
BAD = [  # (fields, the param named, words of the message)
    ({"input": "x", "speed": 1.5}, "speed", "no speed control"),
    ({"input": "x", "top_p": 0}, "top_p", "(0, 1]"),
    ({"input": ""}, "input", "non-empty"),
    ({"input": "a" * 201}, "input", "limit of 200 (--max-input-chars)"),
    ({"input": "x", "model": "tts-1"}, "model", "this server serves indextts-2"),
    ({"input": "x", "foo": 1}, None, "unknown field(s) foo"),
    ({"input": "x", "response_format": "ogg"}, "response_format", "wav, pcm, flac, mp3"),
    ({"input": "x", "response_format": "flac", "stream": True}, "response_format", "cannot be streamed"),
    ({"input": "x", "voice": "../etc"}, "voice", "starting with a letter or digit"),
    ({"input": "x", "emotion_vector": [0.5, 0.5]}, "emotion_vector", "8 weights"),
    ({"input": "x", "emotion_alpha": 0.5}, "emotion_alpha", "no effect without"),
    ({"input": "x", "greedy": True, "top_k": 5}, None, "greedy cannot be combined with top_k"),
    ({"input": "x", "num_beams": 9}, "num_beams", "beams of one request"),
    ({"input": "x", "max_segment_tokens": 500}, "max_segment_tokens", "text position table holds 120"),
    ({"input": "x", "emotion_audio": SHORT_EMOTION}, None, "emotion_audio is 0.20 s long; a prompt needs at least 0.5"),
    ({"input": "x", "emotion_audio": "%%%"}, "emotion_audio", "base64"),
]


@pytest.mark.parametrize("fields,param,says", BAD, ids=[b[2][:30] for b in BAD])
def test_a_bad_request_gets_400_naming_the_rule(server, fields, param, says):
    status, _, body = _speech(server, **fields)
    err = json.loads(body)["error"]
    assert status == 400 and err["type"] == "invalid_request_error" and says in err["message"], err
    assert err["param"] == param


def test_not_json_is_400(server):
    status, _, body = _call(server, "POST", "/v1/audio/speech", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in json.loads(body)["error"]["message"]


def test_a_full_queue_answers_429_at_once(server):
    """2 in flight + 1 waiting: of six long requests at once, three are refused, quickly."""
    results = []

    def one(i):
        t0 = time.perf_counter()
        status, headers, _ = _speech(server, input=f"Request number {i}.", max_codes=240, min_codes=240,
                                     diffusion_steps=3)
        results.append((status, time.perf_counter() - t0, headers.get("retry-after")))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [r for r in results if r[0] == 429]
    done = [r for r in results if r[0] == 200]
    assert len(refused) == 3 and len(done) == 3, results
    assert all(r[2] == "1" for r in refused) and max(r[1] for r in refused) < min(r[1] for r in done)


def _health(server) -> dict:
    return json.loads(_call(server, "GET", "/health")[2])


def test_a_client_that_goes_away_frees_its_rows(server):
    sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=60)
    body = json.dumps({"model": MODEL, "input": "A long one that nobody waits for.", "stream": True,
                       "stream_chunk_codes": 4, "stream_overlap_codes": 1, "max_codes": 240, "min_codes": 240, "diffusion_steps": 2}).encode()
    sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while b"RIFF" not in got:  # the headers and the first audio: it is decoding now
        got += sock.recv(4096)
    assert _health(server)["rows"] == 3
    sock.close()
    deadline = time.time() + 60
    while (h := _health(server))["active"] or h["rows"]:
        assert time.time() < deadline, h
        time.sleep(0.2)
    metrics = _call(server, "GET", "/metrics")[2].decode()
    assert 'tts_requests_total{outcome="cancelled"} 1' in metrics


def test_health_readiness_and_metrics(server):
    assert _call(server, "GET", "/ready")[0] == 200
    h = _health(server)
    assert h["ready"] and h["models"] == [MODEL] and h["torch_loaded"] is False  # the server is torch-free
    status, headers, body = _call(server, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("tts_queue_depth", "tts_active", "tts_decode_rows_count", "tts_dit_batch_count",
                 'tts_time_to_first_audio_s{quantile="0.95"}', 'tts_rtf{quantile="0.5"}',
                 'tts_requests_total{outcome="rejected"}'):
        assert name in text, name
    assert json.loads(_call(server, "GET", "/v1/models")[2])["data"][0]["id"] == MODEL


def test_sigterm_shuts_down_cleanly(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0
    server["log"].seek(0)
    log = server["log"].read()
    # nothing fails on the way down (earlier, Ray Serve itself may log a "Future exception was never
    # retrieved: TaskCancelledError" after a client disconnects: its own disconnect listener)
    assert "shutting down" in log, log[-3000:]
    down = log[log.index("shutting down"):]
    assert "Traceback" not in down, down[down.index("Traceback") - 300:][:4000]
    deadline = time.time() + 30
    while True:  # every process the server's session started (Ray's too) is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.time() < deadline, subprocess.run(["ps", "-o", "pid,cmd", "-g", str(proc.pid)],
                                                      capture_output=True, text=True).stdout
        time.sleep(0.5)


def test_a_wrong_engine_dir_is_one_line_before_ray_starts(tmp_path):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "indextts_trt.runtime.serve.cli", "--engine-dir", str(tmp_path / "no")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and time.perf_counter() - t0 < 30
