"""The torch-free ONNX Runtime pipeline: parity with the reference end to end, no torch import,
in-place KV cache, engine-directory validation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from indextts_trt.runtime.numerics import nearest_index
from indextts_trt.runtime.options import OptionError, RunOptions
from indextts_trt.runtime.pipeline import EngineError, open_pipeline
from indextts_trt.runtime.sampling import SamplingOptions

TEXT = "Hello there. This is a test of the toolchain."


@pytest.fixture(scope="module")
def ref_pipe(tiny_ckpt):
    from indextts_trt.reference.pipeline import ReferencePipeline

    return ReferencePipeline(tiny_ckpt)


def _snr(ref, got):
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return 10 * np.log10((ref ** 2).sum() / max(((ref - got) ** 2).sum(), 1e-30))


@pytest.mark.parametrize("sampling", [SamplingOptions.greedy(max_new_tokens=60), SamplingOptions(max_new_tokens=60)],
                         ids=["greedy", "seeded-sampling"])
def test_runtime_matches_reference(ort_pipe, ref_pipe, prompt_wav, sampling):
    kw = dict(max_text_tokens_per_segment=8, sampling=sampling, diffusion_steps=4, seed=11)
    ref = ref_pipe.synthesize(TEXT, prompt_wav, options=RunOptions(**kw))
    got = ort_pipe.synthesize(TEXT, prompt_wav, options=RunOptions(**kw))
    assert len(ref.segments) == len(got.segments) >= 2
    for r, g in zip(ref.segments, got.segments):
        assert r.codes.tolist() == g.codes.tolist()  # the same codes, exactly
        np.testing.assert_allclose(g.mel, r.mel, atol=2e-3, rtol=1e-3)  # mel: 25-step ODE, fp32
        assert _snr(r.wav, g.wav) > 40.0  # waveform SNR in dB
    assert len(ref.wav) == len(got.wav)


def test_full_run_never_imports_torch(engine_dir, prompt_wav, tmp_path):
    code = (
        "import sys\n"
        "from indextts_trt.runtime.cli import main\n"
        f"sys.argv = ['tts-run', '--engine-dir', {str(engine_dir)!r}, '--speaker', {str(prompt_wav)!r},\n"
        f"            '--out', {str(tmp_path / 'o.wav')!r}, '--diffusion-steps', '2', '--max-codes', '20']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('TORCH-FREE OK')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "TORCH-FREE OK" in r.stdout, r.stderr[-2000:]
    assert (tmp_path / "o.wav").is_file()


def test_decode_steps_reuse_one_cache_buffer(ort_pipe, prompt_wav):
    """The decode loop reuses its cache buffer between growths, grows it with the codes (a step
    attends to at most ~2x the positions that exist, not to the longest segment allowed), and
    each step returns only the (beams, V) logits: the cache never travels."""
    from indextts_trt.runtime.kvcache import FIRST_EXTRA, GROWTH

    dec = ort_pipe.stage("gpt_decode")
    seen, orig = [], dec.run

    def spy(feed, cache=None, **kw):
        out = orig(feed, cache=cache, **kw)
        seen.append((cache.array.ctypes.data, cache.capacity, int(feed["cache_len"].max()),
                     [a.nbytes for a in out.values()]))
        return out

    dec.run = spy
    try:
        ort_pipe.synthesize("Hello there.", prompt_wav, options=RunOptions(
            sampling=SamplingOptions(max_new_tokens=200, min_new_tokens=150), diffusion_steps=1))
    finally:
        dec.run = orig
    assert len(seen) >= 149
    buffers = [p for i, (p, *_) in enumerate(seen) if i == 0 or p != seen[i - 1][0]]
    caps = sorted({c for _, c, _, _ in seen})
    assert len(buffers) == len(caps) >= 2  # one buffer per capacity: grown, never per step
    s0 = seen[0][2]
    assert all(cap <= max(GROWTH * (n + 1) + 1, s0 + FIRST_EXTRA) for _, cap, n, _ in seen)
    logits_bytes = 3 * ort_pipe.cfg.gpt.number_mel_codes * 4
    assert all(sizes == [logits_bytes] for *_, sizes in seen), seen[:2]


def test_engine_dir_validation(engine_dir, tmp_path):
    with pytest.raises(EngineError, match="no manifest.json"):
        open_pipeline(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(engine_dir, broken)
    m = json.loads((broken / "manifest.json").read_text())
    m["stages"]["dit_step"]["graph_key"] = "0" * 16
    (broken / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="dit_step .*another spec"):
        open_pipeline(broken)
    del m["stages"]["bigvgan"]
    (broken / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="lacks stage.*bigvgan"):
        open_pipeline(broken)
    m["schema_version"] = 99
    (broken / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="newer"):
        open_pipeline(broken)


def test_requests_beyond_a_range_name_both_numbers(ort_pipe):
    with pytest.raises(ValueError, match=r"stage vq2emb: N = 100000 is outside the supported range \[1, \d+\]"):
        ort_pipe.run("vq2emb", codes=np.zeros((1, 100000), np.int64))


def test_nearest_index_matches_torch():
    pytest.importorskip("torch")
    from indextts_trt.reference.length_regulator import nearest_indices

    for t_in, t_out in [(7, 12), (100, 172), (13, 13), (9, 4), (501, 861)]:
        assert nearest_index(t_in, t_out).tolist() == nearest_indices(t_in, t_out).tolist()


def test_per_segment_stream_equals_synthesis(ort_pipe, prompt_wav):
    opts = RunOptions(max_text_tokens_per_segment=8, sampling=SamplingOptions(max_new_tokens=30), diffusion_steps=2,
                      seed=4)
    chunks = list(ort_pipe.stream(TEXT, prompt_wav, options=opts))
    whole = ort_pipe.synthesize(TEXT, prompt_wav, options=opts)
    assert len(chunks) == 2 * len(whole.segments) - 1  # segment, silence, segment, ...
    assert np.array_equal(np.concatenate(chunks), whole.wav)


def test_saved_voice_round_trip_and_invalidation(ort_pipe, prompt_wav, tmp_path):
    from indextts_trt.runtime.voices import VoiceError

    opts = RunOptions(sampling=SamplingOptions.greedy(max_new_tokens=20), diffusion_steps=2)
    ort_pipe.save_voice(tmp_path, "alice", prompt_wav)
    assert (tmp_path / "alice.safetensors").is_file() and json.loads((tmp_path / "alice.json").read_text())["format"] == 3
    a = ort_pipe.synthesize("Hello.", prompt_wav, options=opts)
    b = ort_pipe.synthesize("Hello.", ort_pipe.load_voice(tmp_path, "alice"), options=opts)
    assert np.array_equal(a.wav, b.wav)
    meta = json.loads((tmp_path / "alice.json").read_text())
    meta["origin"]["engines"] = "0" * 16
    (tmp_path / "alice.json").write_text(json.dumps(meta))
    with pytest.raises(VoiceError, match="made with other engines"):
        ort_pipe.load_voice(tmp_path, "alice")
    ort_pipe.save_voice(tmp_path, "alice", prompt_wav)
    meta = json.loads((tmp_path / "alice.json").read_text())
    meta["origin"]["backend"] = "trt"  # as a TensorRT pipeline would have saved it
    (tmp_path / "alice.json").write_text(json.dumps(meta))
    with pytest.raises(VoiceError, match=r"made with backend trt \(this pipeline runs ort\).*--save-voice alice"):
        ort_pipe.load_voice(tmp_path, "alice")
    with pytest.raises(VoiceError, match="not found"):
        ort_pipe.load_voice(tmp_path, "bob")
    with pytest.raises(OptionError, match="voice name"):
        ort_pipe.save_voice(tmp_path, "../evil", prompt_wav)


def test_a_voice_from_another_precision_is_refused(ort_pipe, prompt_wav, tmp_path, monkeypatch):
    from indextts_trt.runtime.voices import VoiceError

    ort_pipe.save_voice(tmp_path, "bob", prompt_wav)
    real = ort_pipe.stage_precision
    monkeypatch.setattr(ort_pipe, "stage_precision", lambda s: "fp16" if s == "campplus" else real(s))
    with pytest.raises(VoiceError, match=r"another precision of campplus \(fp32 vs fp16\)"):
        ort_pipe.load_voice(tmp_path, "bob")
