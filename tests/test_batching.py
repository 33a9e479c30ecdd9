"""Cross-request batching (runtime/batching.py, runtime/scheduler.py) on the tiny engines: a
request's codes and audio do not depend on what else is in its batch; the DiT's padded rows are
their own rows alone; the queue is bounded; a cancelled request frees its rows."""

from __future__ import annotations

import time

import numpy as np
import pytest

from indextts_trt.runtime.kvcache import HostKVCache
from indextts_trt.runtime.options import RunOptions
from indextts_trt.runtime.sampling import SamplingOptions
from indextts_trt.runtime.scheduler import Cancelled, Overloaded, Scheduler
from indextts_trt.runtime.streaming import ChunkPlan

TEXT = "Hello there. This is it."  # two segments at 8 tokens each


def _opts(seed: int, codes: int, **kw) -> RunOptions:
    sampling = kw.pop("sampling", SamplingOptions())
    return RunOptions(seed=seed, diffusion_steps=4, **kw).replace(
        sampling=sampling.replace(max_new_tokens=codes, min_new_tokens=codes))  # exactly `codes` codes


def test_a_padded_dit_row_is_that_row_alone(ort_pipe):
    """Rows of different lengths in one dit_step call: each row's valid frames equal the row run
    alone (keys masked, and the WaveNet convs reflect at each row's own end)."""
    cfg, step = ort_pipe.cfg, ort_pipe.stage("dit_step")
    rng = np.random.default_rng(4)

    def row(T: int, P: int) -> dict:
        px = rng.standard_normal((1, cfg.n_mels, T)).astype(np.float32)
        px[..., P:] = 0
        return {"x": rng.standard_normal((1, cfg.n_mels, T)).astype(np.float32), "prompt_x": px,
                "x_lens": np.array([T]), "prompt_len": np.array([P]), "t": np.array([0.3], np.float32),
                "dt": np.array([0.04], np.float32), "style": rng.standard_normal((1, cfg.style_dim)).astype(np.float32),
                "cond": rng.standard_normal((1, T, cfg.s2mel.length_regulator.channels)).astype(np.float32)}

    def run(rows: list[dict]) -> np.ndarray:
        T = max(r["x"].shape[-1] for r in rows)
        pad = lambda a, ax: np.pad(a, [(0, T - a.shape[ax]) if i == ax else (0, 0) for i in range(a.ndim)])  # noqa: E731
        feed = {k: np.concatenate([pad(r[k], 2 if k != "cond" else 1) for r in rows]) for k in ("x", "prompt_x", "cond")}
        feed.update({k: np.concatenate([r[k] for r in rows]) for k in ("x_lens", "prompt_len", "t", "dt", "style")})
        return step.run({**feed, "cfg_rate": np.array([0.7], np.float32)})["x_next"]

    rows = [row(61, 20), row(90, 33), row(47, 5)]
    both = run(rows)
    for i, r in enumerate(rows):
        T = r["x"].shape[-1]
        np.testing.assert_allclose(both[i, :, :T], run([r])[0], atol=1e-5, rtol=1e-5)


def test_a_request_gives_the_same_codes_and_audio_alone_and_beside_others(ort_pipe, prompt_wav):
    """The followed request (2 segments, 3 beams) alone in the scheduler, beside four others (other
    texts and lengths, greedy, 2 beams, another CFG rate, code-chunk streaming) and in the serial
    pipeline: identical codes, audio within one int16 step (fp32 summation order is all that could
    differ; on this machine it is bit-identical). The others equal their serial runs too."""
    mine = _opts(5, 23, max_text_tokens_per_segment=8)
    others = [("A much longer neighbour, so that it keeps decoding after we are done.", _opts(1, 40), None),
              ("Greedy one.", _opts(2, 9, sampling=SamplingOptions.greedy()), None),
              ("Two beams here.", _opts(3, 23, sampling=SamplingOptions(num_beams=2)), None),
              ("Another guidance rate.", _opts(4, 12, cfg_rate=0.3), None),
              ("Streamed in chunks of codes.", _opts(6, 21), ChunkPlan(8, 3))]
    serial = ort_pipe.synthesize(TEXT, prompt_wav, options=mine)
    assert len(serial.segments) == 2
    sched = Scheduler(ort_pipe)
    try:
        alone_job = sched.submit(TEXT, prompt_wav, options=mine)
        alone = alone_job.result(timeout=300)
        busy = sched.call(lambda pipe: time.sleep(1.0))  # all six arrive while the worker is busy: one tick
        jobs = [sched.submit(t, prompt_wav, options=o, chunk=c) for t, o, c in others[:2]]
        job = sched.submit(TEXT, prompt_wav, options=mine)
        jobs += [sched.submit(t, prompt_wav, options=o, chunk=c) for t, o, c in others[2:]]
        busy.result()
        beside = job.result(timeout=300)
        other_audio = [j.result(timeout=300) for j in jobs]
        snap = sched.metrics.snapshot()["observed"]
    finally:
        sched.close()
    for got, j in ((alone, alone_job), (beside, job)):
        assert [list(c) for c in j.done_stats["codes"]] == [list(s.codes) for s in serial.segments]
        assert got.shape == serial.wav.shape and np.abs(got.astype(np.int32) - serial.wav).max() <= 1
    assert snap["decode_requests"]["p95"] >= 3 and snap["decode_rows"]["p95"] > 3  # they did share steps
    assert snap["dit_batch"]["p95"] >= 2  # the 2-beam one ends its 23 codes with our first segment
    for (text, opts, chunk), got, j in zip(others, other_audio, jobs):
        if chunk is None:
            ref = ort_pipe.synthesize(text, prompt_wav, options=opts)
            assert [list(c) for c in j.done_stats["codes"]] == [list(s.codes) for s in ref.segments]
            ref_wav = ref.wav
        else:
            ref_wav = np.concatenate(list(ort_pipe.stream(text, prompt_wav, options=opts, chunk=chunk)))
        assert got.shape == ref_wav.shape and np.abs(got.astype(np.int32) - ref_wav).max() <= 1, text


def test_the_queue_is_bounded_and_a_cancelled_request_frees_its_rows(ort_pipe, prompt_wav):
    sched = Scheduler(ort_pipe, max_active=1, max_queue=1)
    try:
        long = _opts(0, 200)
        first = sched.submit(TEXT, prompt_wav, options=long)
        second = sched.submit("Second.", prompt_wav, options=_opts(1, 5))
        t0 = time.perf_counter()
        with pytest.raises(Overloaded, match="queue holds 1"):
            sched.submit("Third.", prompt_wav, options=_opts(2, 5))
        assert time.perf_counter() - t0 < 0.5  # refused at once
        deadline = time.time() + 120
        while sched.load()["rows"] == 0 and time.time() < deadline:  # the first one is decoding
            time.sleep(0.02)
        assert sched.load()["rows"] == 3
        sched.cancel(first)
        with pytest.raises(Cancelled):
            first.result(timeout=60)
        assert second.result(timeout=120).size > 0  # the queued one ran after it
        assert sched.load() == {"queued": 0, "active": 0, "rows": 0}
        assert sched.decode.cache is None  # nothing decodes: the shared cache is freed
        counts = sched.metrics.snapshot()["requests"]
        assert counts["rejected"] == 1 and counts["cancelled"] == 1 and counts["ok"] == 1
    finally:
        sched.close()


def test_a_bad_request_fails_alone(ort_pipe, prompt_wav):
    """An error inside one request (its text over the model's per-segment token limit) is that
    request's; the request beside it finishes."""
    sched = Scheduler(ort_pipe)
    try:
        good = sched.submit(TEXT, prompt_wav, options=_opts(0, 10))
        bad = sched.submit("word " * 400, prompt_wav, options=_opts(0, 10, max_text_tokens_per_segment=600))
        with pytest.raises(Exception, match="max_text_tokens"):
            bad.result(timeout=120)
        assert good.result(timeout=120).size > 0
    finally:
        sched.close()


def test_cache_rebuild_keeps_the_rows_it_is_told_to():
    rng = np.random.default_rng(0)
    c = HostKVCache(2, 5, 3, 9, 4, np.float32)
    c.array[:] = rng.standard_normal(c.array.shape)
    old, v = c.array.copy(), c.version
    c.rebuild(np.array([3, 0]), 4, 12)  # rows 3 and 0 first, two empty rows, more capacity
    assert c.array.shape == (2, 2, 4, 3, 12, 4) and c.version == v + 1
    np.testing.assert_array_equal(c.array[:, :, :2, :, :9], old[:, :, [3, 0]])
    assert not c.array[:, :, 2:].any() and not c.array[..., 9:, :].any()
    kv0 = rng.standard_normal((2, 2, 1, 3, 5, 4)).astype(np.float32)
    c.load_prefix(kv0, slice(2, 4))
    np.testing.assert_array_equal(c.array[:, :, 2:4, :, :5], np.repeat(kv0, 2, axis=2))
    np.testing.assert_array_equal(c.array[:, :, :2, :, :9], old[:, :, [3, 0]])  # the kept rows untouched
    c.rebuild(np.array([1]), 1, 6)  # fewer rows and less capacity: a prefix of the positions
    np.testing.assert_array_equal(c.array[:, :, 0], old[:, :, 0, :, :6])
