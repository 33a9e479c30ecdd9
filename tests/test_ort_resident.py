"""ONNX Runtime with the KV cache, constants and fed-back outputs resident (``OrtRunner`` with a
device, what ``--ort-provider cuda`` uses with cuda-python installed).

Here the runner runs on ONNX Runtime's CPU provider and its "device" is the stand-in CUDA runtime
of tests/fake_trt.py, whose allocations are host memory: ONNX Runtime reads the cache through the
very pointer binding it uses on a GPU, and every cache copy is a real memmove. So these tests check
the resident control flow and numbers for real — what is bound by address, what stays an OrtValue,
what crosses to the host, what is freed — but they are NO evidence of ONNX Runtime's CUDA provider
itself: no GPU was used.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fake_trt import FakeCudart
from fake_trt import device_view as _view
from indextts_trt.runtime.cuda_device import Device


def _runners(engine_dir, tiny_cfg, stage):
    from indextts_trt.runtime.indextts2.stages import stage_specs
    from indextts_trt.runtime.ort_backend import OrtRunner

    spec = stage_specs(tiny_cfg)[stage]
    rt = FakeCudart()
    resident = OrtRunner(engine_dir / f"{stage}.onnx", spec, threads=1, device=Device(rt))
    host = OrtRunner(engine_dir / f"{stage}.onnx", spec, threads=1)
    return rt, resident, host


def test_resident_decode_reads_the_device_cache_by_address_and_gives_the_host_numbers(engine_dir, tiny_cfg):
    from indextts_trt.runtime.device_cache import DeviceKVCache

    rt, res, host = _runners(engine_dir, tiny_cfg, "gpt_decode")
    rng = np.random.default_rng(5)
    rows, cap = 4, 33
    dc, hc = res.new_cache(rows, cap), host.new_cache(rows, cap)
    assert isinstance(dc, DeviceKVCache) and dc.shape == hc.array.shape
    for r, n in enumerate((9, 9, 14, 11)):  # two requests' rows, the second's at two lengths
        kv0 = (rng.standard_normal(hc.array[:, :, :1, :, :n].shape) * 0.5).astype(np.float32)
        dc.load_prefix(kv0, slice(r, r + 1))
        hc.load_prefix(kv0, slice(r, r + 1))
    lengths = np.array([9, 9, 14, 11])
    for step in range(5):
        feed = {"mel_ids": rng.integers(0, 97, (rows, 1)), "mel_pos": (lengths - 7)[:, None],
                "cache_len": lengths}
        feed = {k: np.asarray(v, np.int64) for k, v in feed.items()}
        rt.calls.clear()
        a, b = res.run(feed, cache=dc), host.run(feed, cache=hc)
        assert set(a) == {"logits"}  # kv_new went into the cache, not to the host
        np.testing.assert_array_equal(a["logits"], b["logits"])
        # the step moved only kv_new, device to device, one copy per run of rows at one position:
        # nothing crossed between host and device
        assert not any(c in rt.calls for c in ("memcpy1", "memcpy2")), rt.calls
        assert rt.calls.count("malloc") == (step == 0)  # kv_new's buffer, once
        assert rt.calls.count("memcpy3d") == 3
        np.testing.assert_array_equal(_view(dc.ptr, dc.shape, np.float32), hc.array)
        if step == 2:  # a beam step's reorder and a growth, on both
            for c in (dc, hc):
                c.reorder(np.array([0, 1]), np.array([1, 1]))
                c.grow(40)
        lengths = lengths + 1
    res.close()
    assert not rt.blocks  # the cache was still open: close() freed it with the stream


def test_resident_cfm_uploads_constants_once_and_keeps_x_where_it_runs(engine_dir, tiny_cfg):
    from indextts_trt.runtime.cfm import solve_euler

    rt, res, host = _runners(engine_dir, tiny_cfg, "dit_step")
    rng = np.random.default_rng(4)
    T, c = 29, tiny_cfg
    const = {"prompt_x": rng.standard_normal((1, c.n_mels, T)).astype(np.float32), "x_lens": np.array([T], np.int64),
             "prompt_len": np.array([7], np.int64), "style": rng.standard_normal((1, c.style_dim)).astype(np.float32),
             "cond": rng.standard_normal((1, T, c.s2mel.length_regulator.channels)).astype(np.float32),
             "cfg_rate": np.array([0.7], np.float32)}
    x0 = rng.standard_normal((1, c.n_mels, T)).astype(np.float32)
    seen = []

    def step(r, record):
        def run(feed, fetch):
            out = r.run(feed, feedback={"x_next": "x"}, fetch=fetch)
            if record:
                seen.append((set(out), type(r._kept["x"]).__name__))
            return out
        return run

    out = {}
    for name, r in (("resident", res), ("host", host)):
        r.set_constants(const)
        if name == "resident":  # uploaded once, here: each step binds these OrtValues
            assert {k: type(v).__name__ for k, v in r._const.items()} == dict.fromkeys(const, "OrtValue")
        out[name] = solve_euler(step(r, name == "resident"), x0, const["prompt_len"], 4)
        r.clear_constants()
    np.testing.assert_array_equal(out["resident"], out["host"])
    assert seen[0][1] == "OrtValue"  # x stayed an OrtValue (on the GPU: device memory) between steps
    assert [s for s, _ in seen[:-1]] == [set()] * 3 and seen[-1][0] == {"x_next"}  # only the last x came back
    res.close()
    assert not rt.blocks


def test_the_pipeline_resident_gives_the_host_codes_and_frees_everything(engine_dir, prompt_wav, monkeypatch):
    from indextts_trt.runtime import ort_backend
    from indextts_trt.runtime.options import RunOptions
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.sampling import SamplingOptions

    opts = RunOptions(sampling=SamplingOptions(max_new_tokens=70, min_new_tokens=40), diffusion_steps=3, seed=3)
    with open_pipeline(engine_dir, backend="ort", threads=1) as p:
        a = p.synthesize("Hello there. And a second sentence here.", prompt_wav, options=opts)
    rt = FakeCudart()
    devices = []

    def device(providers):
        devices.append(Device(rt))
        return devices[-1]

    monkeypatch.setattr(ort_backend, "resident_device", device)
    with open_pipeline(engine_dir, backend="ort", threads=1) as p:
        assert all(r.dev is not None for r in p._runners.values())
        b = p.synthesize("Hello there. And a second sentence here.", prompt_wav, options=opts)
        assert "memcpy3d" in rt.calls or "memcpy2d" in rt.calls  # the decode cache was the device one
    assert [s.codes.tolist() for s in a.segments] == [s.codes.tolist() for s in b.segments]
    np.testing.assert_array_equal(a.wav, b.wav)
    assert devices and not rt.blocks and not any(d.live or d.streams for d in devices)


def test_only_the_cuda_provider_is_resident_and_without_cuda_python_it_says_so(monkeypatch, caplog):
    from indextts_trt.runtime import gpu
    from indextts_trt.runtime.ort_backend import resident_device

    assert resident_device(None) is None and resident_device(["CPUExecutionProvider"]) is None
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: None)
    with caplog.at_level(logging.WARNING):
        assert resident_device(["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert "the KV cache stays on the host" in caplog.text and "cuda-python is not installed" in caplog.text
    rt = FakeCudart()
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: rt)
    dev = resident_device(["CUDAExecutionProvider"])
    assert isinstance(dev, Device) and dev.rt is rt


def test_a_resident_input_of_the_wrong_dtype_is_refused(engine_dir, tiny_cfg):
    rt, res, _ = _runners(engine_dir, tiny_cfg, "dit_step")
    with pytest.raises(Exception, match="input style is float16, the graph takes float32"):
        res.set_constants({"style": np.zeros((1, tiny_cfg.style_dim), np.float16)})
    res.close()


def test_resident_batched_serving_gives_each_request_its_serial_codes(engine_dir, prompt_wav, ort_pipe, monkeypatch):
    """Requests of different lengths share the resident decode cache (rows join and leave: the
    device cache's rebuild) and each gets the codes it gets alone on the host pipeline."""
    from indextts_trt.runtime import ort_backend
    from indextts_trt.runtime.options import RunOptions
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.sampling import SamplingOptions
    from indextts_trt.runtime.scheduler import Scheduler

    def opts(seed, codes, **kw):
        return RunOptions(seed=seed, diffusion_steps=2).replace(
            sampling=SamplingOptions(**kw).replace(max_new_tokens=codes, min_new_tokens=codes))

    work = [("Hello there.", opts(1, 30)), ("A second, longer one that keeps going.", opts(2, 45)),
            ("Two beams.", opts(3, 17, num_beams=2))]
    refs = [ort_pipe.synthesize(t, prompt_wav, options=o) for t, o in work]
    rt = FakeCudart()
    monkeypatch.setattr(ort_backend, "resident_device", lambda providers: Device(rt))
    with open_pipeline(engine_dir, threads=2) as pipe:
        sched = Scheduler(pipe)
        try:
            jobs = [sched.submit(t, prompt_wav, options=o) for t, o in work]
            for j in jobs:
                j.result(timeout=300)
            snap = sched.metrics.snapshot()["observed"]
        finally:
            sched.close()
    for j, ref in zip(jobs, refs):
        assert [list(c) for c in j.done_stats["codes"]] == [list(s.codes) for s in ref.segments]
    assert snap["decode_requests"]["p95"] >= 2  # they did share decode steps
    assert not rt.blocks


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_a_cuda_runner_that_onnxruntime_puts_on_the_cpu_drops_its_device(engine_dir, tiny_cfg, caplog):
    """onnxruntime without CUDA runs a CUDA-asked session on the CPU: the runner must then not bind
    the GPU device's pointers as host memory; it frees the device and runs on the host."""
    from indextts_trt.runtime.indextts2.stages import stage_specs
    from indextts_trt.runtime.kvcache import HostKVCache
    from indextts_trt.runtime.ort_backend import OrtRunner

    spec = stage_specs(tiny_cfg)["gpt_decode"]
    rt = FakeCudart()
    dev = Device(rt)
    with caplog.at_level(logging.WARNING):
        r = OrtRunner(engine_dir / "gpt_decode.onnx", spec, ["CUDAExecutionProvider", "CPUExecutionProvider"],
                      threads=1, device=dev)
    if r.provider == "CUDAExecutionProvider":
        pytest.skip("this onnxruntime has CUDA")
    assert r.dev is None and isinstance(r.new_cache(2, 8), HostKVCache)
    assert "runs it on CPUExecutionProvider" in caplog.text and not rt.blocks and not dev.streams
    r.close()
