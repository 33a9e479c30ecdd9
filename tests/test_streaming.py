"""Code-chunk streaming: committed codes only, exact crossfade, audio against non-streamed synthesis,
audio before the GPT finishes, and the CLI's time to first audio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indextts_trt.runtime.indextts2.config import target_mel_length
from indextts_trt.runtime.options import RunOptions
from indextts_trt.runtime.sampling import BeamSearch, SamplingOptions
from indextts_trt.runtime.streaming import ChunkPlan, Crossfader, fade_in

TEXT = "Hello world, this is a streaming test."
HOP = 256
# Chunked S2Mel sees only its window, so its audio is an approximation of the whole-segment run
# (see runtime/streaming.py). On the tiny random model the mel is dominated by the CFM noise and
# the prompt, so this bound checks that every window sits on the segment's frame and noise grid
# and that the crossfade joins them; it says nothing about real-weight quality.
STREAM_SNR_DB = 30.0


def _snr(ref, got):
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return 10 * np.log10((ref ** 2).sum() / max(((ref - got) ** 2).sum(), 1e-30))


def test_fade_gains_sum_to_one():
    for n in (1, 7, 256, 5120):
        w = fade_in(n)
        assert w.dtype == np.float32 and np.all(np.diff(w) > 0) and 0 < w[0] <= w[-1] <= 1
        # the fade-out (1 - w) is the fade-in played backwards: a Hann window split in two halves
        np.testing.assert_allclose(w + w[::-1], 1.0, atol=1e-6)


@pytest.mark.parametrize("chunk,overlap,n_codes", [(10, 4, 37), (7, 7, 50), (5, 0, 23), (100, 20, 250)])
def test_windows_of_one_signal_crossfade_back_to_it(chunk, overlap, n_codes):
    """Windows cut from one signal on the plan's frame grid rebuild it exactly: the crossfade only
    mixes two copies of the same samples, with gains summing to 1."""
    plan = ChunkPlan(chunk, overlap)
    whole = np.random.default_rng(chunk).standard_normal(target_mel_length(n_codes) * HOP).astype(np.float32)
    fader, out, done = Crossfader(), [], 0
    while done < n_codes:
        end = min(done + chunk, n_codes)
        f0, f1 = plan.frames(*plan.window(done, end), target_mel_length)
        keep = plan.held_back(end, HOP, target_mel_length) if end < n_codes else 0
        out.append(fader.push(whole[f0 * HOP:f1 * HOP], keep))
        done = end
    out.append(fader.flush())
    got = np.concatenate(out)
    assert got.shape == whole.shape
    np.testing.assert_allclose(got, whole, atol=1e-6)


def test_chunk_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        ChunkPlan(0, 0)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, chunk=10\]"):
        ChunkPlan(10, 11)
    with pytest.raises(ValueError, match="shorter than its"):
        f = Crossfader()
        f.push(np.zeros(100), keep=50)
        f.push(np.zeros(20), keep=0)


def _toy_logits(seqs, vocab, stop, step):
    """Logits that depend on each beam's whole history, with a stop code that becomes likely."""
    rows = []
    for s in seqs:
        h = np.random.default_rng(hash((len(s), tuple(s[-3:]))) % 2**32)
        r = h.standard_normal(vocab).astype(np.float32) * 3
        r[stop] = -4.0 + 0.15 * step
        rows.append(r)
    return np.stack(rows)


@pytest.mark.parametrize("seed", range(6))
def test_committed_codes_are_never_taken_back(seed):
    vocab, stop = 40, 39
    opts = SamplingOptions(num_beams=3, max_new_tokens=80, seed=seed, repetition_penalty=1.3)
    search = BeamSearch(opts, np.array([1, 1, 38]), vocab, stop)
    seen, step = [], 0
    while not search.done:
        search.step(_toy_logits(search.sequences, vocab, stop, step))
        step += 1
        seen.append(search.committed().tolist())
    final = search.finalize().tolist()
    lengths = [len(c) for c in seen]
    assert lengths == sorted(lengths)  # the committed prefix only grows
    assert all(final[:len(c)] == c for c in seen)  # and is always a prefix of the answer
    # beams disagree on their last codes for a while: committing is not "the best beam so far"
    assert any(len(c) < len(search.sequences[0]) for c in seen[:-1])


def test_one_window_stream_equals_synthesis(ort_pipe, prompt_wav):
    opts = RunOptions(sampling=SamplingOptions(max_new_tokens=30), diffusion_steps=3, seed=2)
    whole = ort_pipe.synthesize(TEXT, prompt_wav, options=opts)
    got = np.concatenate(list(ort_pipe.stream(TEXT, prompt_wav, options=opts, chunk=ChunkPlan(1000, 20))))
    assert np.array_equal(got, whole.wav)


def test_chunked_stream_matches_synthesis_within_tolerance(ort_pipe, prompt_wav, monkeypatch):
    opts = RunOptions(sampling=SamplingOptions(max_new_tokens=45), diffusion_steps=4, seed=5)
    whole = ort_pipe.synthesize(TEXT, prompt_wav, options=opts)
    assert max(len(s.codes) for s in whole.segments) > 24  # several windows per segment
    pieces = list(ort_pipe.stream(TEXT, prompt_wav, options=opts, chunk=ChunkPlan(12, 4)))
    got = np.concatenate(pieces)
    assert len(pieces) > 2 * len(whole.segments)
    assert got.shape == whole.wav.shape  # windows tile the segment's frame grid exactly
    assert _snr(whole.wav, got) > STREAM_SNR_DB
    # the bound has teeth: windows with their own frame count (off the segment's grid) fail it
    monkeypatch.setattr(ChunkPlan, "frames", staticmethod(lambda a, e, grid: (0, grid(e - a))))
    off = np.concatenate(list(ort_pipe.stream(TEXT, prompt_wav, options=opts, chunk=ChunkPlan(12, 4))))
    n = min(len(off), len(whole.wav))
    assert _snr(whole.wav[:n], off[:n]) < STREAM_SNR_DB


def test_first_audio_comes_before_the_gpt_finishes(ort_pipe, prompt_wav, monkeypatch):
    steps, orig = [0], ort_pipe.generate_steps

    def counting(*a, **kw):
        for search in orig(*a, **kw):
            steps[0] += 1
            yield search

    monkeypatch.setattr(ort_pipe, "generate_steps", counting)
    opts = RunOptions(sampling=SamplingOptions(max_new_tokens=40), diffusion_steps=2, seed=3)
    it = ort_pipe.stream("Hello world.", prompt_wav, options=opts, chunk=ChunkPlan(8, 2))
    next(it)
    at_first_audio = steps[0]
    rest = list(it)
    assert rest and at_first_audio < steps[0]  # audio out while codes were still being generated


def test_cli_reports_code_chunk_time_to_first_audio(engine_dir, prompt_wav, tmp_path):
    from typer.testing import CliRunner

    from indextts_trt.runtime.cli import app

    out, rep = tmp_path / "s.wav", tmp_path / "r.json"
    r = CliRunner().invoke(app, ["--engine-dir", str(engine_dir), "--speaker", str(prompt_wav), "--out", str(out),
                                 "--text", "Hello world.", "--max-codes", "30", "--diffusion-steps", "2",
                                 "--stream-chunk", "10", "--stream-overlap", "3", "--report", str(rep)])
    assert r.exit_code == 0, r.output
    d = json.loads(rep.read_text())
    assert d["streaming"] == "code-chunk streaming, 10 codes, overlap 3"
    assert 0 < d["time_to_first_audio_seconds"] < d["total_seconds"]
    assert d["stage_seconds"]["s2mel"] > 0 and out.is_file()
    bad = CliRunner().invoke(app, ["--engine-dir", str(engine_dir), "--out", str(tmp_path / "x.wav"),
                                   "--stream-chunk", "5", "--stream-overlap", "9"])
    assert bad.exit_code != 0 and "overlap must be in [0, chunk=5]" in bad.output
    assert not (tmp_path / "x.wav").exists()
