"""Load test of ``tts-serve`` on localhost: throughput and latency at 1, 2, 4, 8 concurrent clients,
with the batching scheduler and with one request at a time.

Method: two ``tts-serve`` processes run side by side on the engines, ``--max-active 8`` (requests
batched) and ``--max-active 1`` (one at a time, the others queued); one warm-up request each is
discarded. For each concurrency ``c``, first one server then the other (so a change of the
machine's load hits both alike), ``c`` client threads send requests back to back (closed loop),
``n`` per client, bounded by ``--max-seconds`` per level. Every request is the same text with a
fixed code count per segment (``min_codes = max_codes``: random weights never stop on their own),
two segments (so the first audio comes before the last), streamed as raw PCM so the first body
byte is the first audio. Per level: requests/s (completed over the
level's wall time), audio seconds per wall second, p50/p95 latency and time to first audio, the
replica process' CPU seconds per request (its ORT threads included; robust to other processes'
load, unlike wall time), and the server's mean decode rows and DiT batch. ``--stages`` adds an
in-process profile: the same requests one after another and all at once through the scheduler,
with the seconds and calls of every stage.

    python -m indextts_trt.benchmarks.serve_load --engine-dir engines/ --out benchmarks/results/serve-tiny
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."
CONFIGS = {"batched": 8, "one at a time": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``tts-serve`` process in its own session, stopped with SIGTERM."""

    def __init__(self, engine_dir: Path, max_active: int, threads: int, queue: int):
        self.port = _free_port()
        cmd = [sys.executable, "-m", "indextts_trt.runtime.serve.cli", "--engine-dir", str(engine_dir), "--port",
               str(self.port), "--max-active", str(max_active), "--max-queue", str(queue), "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        t0 = time.perf_counter()
        for line in self.proc.stderr:
            if line.startswith("serving "):
                break
            if line.startswith("error: "):
                raise SystemExit(line.strip())
        else:
            raise SystemExit(f"tts-serve exited with {self.proc.wait()}")
        self.start_s = time.perf_counter() - t0
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the pipe drained
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/health")
        self.replica_pid = json.loads(conn.getresponse().read())["pid"]
        conn.close()

    def cpu_seconds(self) -> float:
        """user + system CPU seconds of the replica process so far (all its threads)."""
        fields = Path(f"/proc/{self.replica_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return {m[1]: float(m[2]) for m in re.finditer(r"^(tts_[a-z_]+(?:_sum|_count)?) ([0-9.e+-]+)$", text, re.M)}

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


def one_request(port: int, body: bytes) -> dict:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/audio/speech", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    first, n = None, 0
    while piece := r.read1(1 << 16):
        first = first or time.perf_counter()
        n += len(piece)
    conn.close()
    end = time.perf_counter()
    return {"status": r.status, "latency_s": end - t0, "ttfa_s": (first or end) - t0, "bytes": n, "end": end}


def run_level(server: Server, body: bytes, c: int, per_client: int, max_seconds: float, sr: int) -> dict:
    results: list[dict] = []
    lock = threading.Lock()
    t0 = time.perf_counter()

    def client():
        for _ in range(per_client):
            if time.perf_counter() - t0 > max_seconds:
                return
            res = one_request(server.port, body)
            with lock:
                results.append(res)

    before, cpu0 = server.metrics(), server.cpu_seconds()
    threads = [threading.Thread(target=client) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after, cpu = server.metrics(), server.cpu_seconds() - cpu0
    ok = [r for r in results if r["status"] == 200]
    wall = max(r["end"] for r in results) - t0 if results else 0.0

    def mean_of(name: str) -> float | None:
        n = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        return (after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)) / n if n else None

    def q(key: str, p: float) -> float | None:
        return float(np.percentile([r[key] for r in ok], p)) if ok else None

    audio = sum(r["bytes"] for r in ok) / 2 / sr
    return {"concurrency": c, "requests": len(results), "ok": len(ok), "refused": len(results) - len(ok),
            "wall_s": wall, "requests_per_s": len(ok) / wall if wall else None,
            "audio_s_per_wall_s": audio / wall if wall else None, "audio_s_per_request": audio / max(len(ok), 1),
            "latency_p50_s": q("latency_s", 50), "latency_p95_s": q("latency_s", 95),
            "ttfa_p50_s": q("ttfa_s", 50), "ttfa_p95_s": q("ttfa_s", 95),
            "replica_cpu_s_per_request": cpu / len(ok) if ok else None,
            "mean_decode_rows": mean_of("tts_decode_rows"), "mean_decode_requests": mean_of("tts_decode_requests"),
            "mean_dit_batch": mean_of("tts_dit_batch")}


def stage_profile(engine_dir: Path, req: dict, threads: int, n: int = 4) -> dict:
    """``n`` requests through the scheduler in this process, one after another and all at once:
    wall time, and the calls, seconds and rows of every stage (``Pipeline.run`` timed)."""
    from collections import defaultdict

    from indextts_trt.runtime.audio import SR_22K, write_wav_int16
    from indextts_trt.runtime.demo_audio import synth_voice_prompt
    from indextts_trt.runtime.options import RunOptions
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.sampling import SamplingOptions
    from indextts_trt.runtime.scheduler import Scheduler

    acc: dict = defaultdict(lambda: {"calls": 0, "s": 0.0, "rows": 0})
    opts = RunOptions(diffusion_steps=req["diffusion_steps"], max_text_tokens_per_segment=req["max_segment_tokens"],
                      sampling=SamplingOptions(
        num_beams=req["num_beams"], max_new_tokens=req["max_codes"], min_new_tokens=req["min_codes"]))
    with open_pipeline(engine_dir, threads=threads or None) as pipe:
        run = pipe.run

        def timed_run(name, **kw):
            t = time.perf_counter()
            out = run(name, **kw)
            a = acc[name]
            a["calls"], a["s"] = a["calls"] + 1, a["s"] + time.perf_counter() - t
            a["rows"] += next((kw[k].shape[0] for k in ("mel_ids", "x") if k in kw), 1)
            return out

        pipe.run = timed_run
        prompt = Path(f"/tmp/serve_load_prompt_{os.getpid()}.wav")
        write_wav_int16(prompt, synth_voice_prompt(3.0, SR_22K, seed=1), SR_22K)
        sched = Scheduler(pipe)
        try:
            sched.submit(req["input"], prompt, options=opts).result()  # warm-up
            out = {"requests": n}
            for mode in ("serial", "batched"):
                acc.clear()
                t0 = time.perf_counter()
                if mode == "serial":
                    for i in range(n):
                        sched.submit(req["input"], prompt, options=opts.replace(seed=i)).result()
                else:
                    jobs = [sched.submit(req["input"], prompt, options=opts.replace(seed=i)) for i in range(n)]
                    for j in jobs:
                        j.result()
                out[mode] = {"wall_s": time.perf_counter() - t0,
                             "stages": dict(sorted(acc.items(), key=lambda kv: -kv[1]["s"]))}
        finally:
            sched.close()
            prompt.unlink(missing_ok=True)
    return out


def count_segments(engine_dir: Path, text: str, max_tokens: int) -> int:
    from indextts_trt.runtime.text import TextNormalizer, TextTokenizer, text_to_segments

    return len(text_to_segments(text, TextNormalizer(), TextTokenizer(engine_dir / "bpe.model"), max_tokens, 0))


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1m": os.getloadavg()[0], "note": "2 cores shared with up to 4 other agents' jobs: "
            "figures include their load"}


def markdown(doc: dict) -> str:
    req = doc["request"]
    lines = [f"# tts-serve load test: {doc['label']}", "",
             f"{doc['machine']['cpu_count']} CPU cores ({doc['machine']['note']}), ONNX Runtime CPU, "
             f"load average {doc['machine']['load_average_1m']:.1f} at the start. Every request: "
             f"{req['max_codes']} codes per segment, {doc['segments']} segments ({doc['audio_s_per_request']:.2f} s "
             f"of audio), {req['num_beams']} beams, "
             f"{req['diffusion_steps']} DiT steps, streamed PCM; {doc['per_client']} requests per client, "
             f"{doc['max_seconds']:.0f} s at most per level.", "",
             "| server | clients | req/s | audio s / wall s | p50 latency s | p95 latency s | p50 TTFA s | p95 TTFA s |"
             " replica CPU s / request | mean decode rows | mean DiT batch |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, levels in doc["configs"].items():
        for lv in levels:
            f = lambda k, nd=2: "–" if lv[k] is None else f"{lv[k]:.{nd}f}"  # noqa: E731
            lines.append(f"| {name} | {lv['concurrency']} | {f('requests_per_s', 3)} | {f('audio_s_per_wall_s', 3)} | "
                         f"{f('latency_p50_s')} | {f('latency_p95_s')} | {f('ttfa_p50_s')} | {f('ttfa_p95_s')} | "
                         f"{f('replica_cpu_s_per_request')} | {f('mean_decode_rows', 1)} | {f('mean_dit_batch', 1)} |")
    lines += ["", "Batching gain, batched ÷ one at a time at the same clients: requests/s " +
              ", ".join(f"{c}: ×{g:.2f}" for c, g in doc["gain"].items()) + "; replica CPU seconds per request "
              + ", ".join(f"{c}: ×{g:.2f}" for c, g in doc["cpu_gain"].items()) + " (one at a time ÷ batched).", ""]
    if doc.get("stages"):
        st = doc["stages"]
        lines += [f"In-process, {st['requests']} requests through the scheduler (no HTTP): one after another "
                  f"{st['serial']['wall_s']:.2f} s, all at once {st['batched']['wall_s']:.2f} s.", "",
                  "| stage | calls one by one | s one by one | calls batched | s batched | rows per call batched |",
                  "|---|---|---|---|---|---|"]
        for name in st["serial"]["stages"]:
            a, b = st["serial"]["stages"][name], st["batched"]["stages"].get(name, {"calls": 0, "s": 0, "rows": 0})
            lines.append(f"| {name} | {a['calls']} | {a['s']:.3f} | {b['calls']} | {b['s']:.3f} | "
                         f"{b['rows'] / max(b['calls'], 1):.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, levels in doc["configs"].items():
        cs = [lv["concurrency"] for lv in levels]
        a.plot(cs, [lv["requests_per_s"] for lv in levels], "o-", label=name)
        b.plot(cs, [lv["latency_p50_s"] for lv in levels], "o-", label=f"{name} p50")
        b.plot(cs, [lv["ttfa_p50_s"] for lv in levels], "x--", label=f"{name} TTFA p50")
    for ax, title in ((a, "requests per second"), (b, "seconds")):
        ax.set_ylim(bottom=0)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"tts-serve on {doc['label']} ({doc['machine']['cpu_count']} shared CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json, OUT.md, OUT.png")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--per-client", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--codes", type=int, default=50, help="codes per segment")
    ap.add_argument("--segment-tokens", type=int, default=30, help="text tokens per segment (the tiny BPE cuts "
                    "TEXT into 30 + 18 at 30)")
    ap.add_argument("--diffusion-steps", type=int, default=25)
    ap.add_argument("--label", default=None, help="what the engines are, for the title (default: the path)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--stages", action="store_true", help="also profile the stages in-process")
    args = ap.parse_args(argv)
    req = {"model": "indextts-2", "input": TEXT, "response_format": "pcm", "stream": True, "max_codes": args.codes,
           "min_codes": args.codes, "diffusion_steps": args.diffusion_steps, "num_beams": 3,
           "max_segment_tokens": args.segment_tokens}
    body = json.dumps(req).encode()
    doc = {"engines": str(args.engine_dir), "label": args.label or str(args.engine_dir), "machine": machine(),
           "segments": count_segments(args.engine_dir, TEXT, args.segment_tokens), "request": req, "per_client": args.per_client,
           "max_seconds": args.max_seconds, "configs": {}, "start_s": {}}
    servers: dict[str, Server] = {}
    try:
        for name, active in CONFIGS.items():
            servers[name] = Server(args.engine_dir, active, args.threads, queue=max(args.concurrency))
            doc["start_s"][name] = servers[name].start_s
            one_request(servers[name].port, body)  # warm-up, discarded
        for c in args.concurrency:
            for name, server in servers.items():
                lv = run_level(server, body, c, args.per_client, args.max_seconds, 22050)
                doc["configs"].setdefault(name, []).append(lv)
                print(name, json.dumps(lv), file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
    if args.stages:
        doc["stages"] = stage_profile(args.engine_dir, json.loads(body), args.threads)
    doc["audio_s_per_request"] = doc["configs"]["batched"][0]["audio_s_per_request"]
    pairs = list(zip(doc["configs"]["batched"], doc["configs"]["one at a time"]))
    doc["gain"] = {b["concurrency"]: b["requests_per_s"] / o["requests_per_s"] for b, o in pairs
                   if b["requests_per_s"] and o["requests_per_s"]}
    doc["cpu_gain"] = {b["concurrency"]: o["replica_cpu_s_per_request"] / b["replica_cpu_s_per_request"]
                       for b, o in pairs if b["replica_cpu_s_per_request"] and o["replica_cpu_s_per_request"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(doc, indent=2))
    Path(f"{args.out}.md").write_text(markdown(doc))
    plot(doc, Path(f"{args.out}.png"))
    print(markdown(doc))


if __name__ == "__main__":
    main()
