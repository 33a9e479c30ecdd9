"""Host-logic tests of the TensorRT backend, with stand-in ``tensorrt`` and CUDA modules
(tests/fake_trt.py). They check the backend's own control flow — profile choice, binding, the KV
cache's device copies, constants, the CFM's device ping-pong, CUDA-graph replay and fallback,
every allocation freed — by running the real ONNX graphs behind the stand-ins. They are NO
evidence that TensorRT works: nothing here loads or runs a TensorRT engine."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from fake_trt import FakeCudart, make_tensorrt, write_engine
from fake_trt import device_view as _view
from indextts_trt.runtime.cuda_device import Device
from indextts_trt.runtime.kvcache import HostKVCache


@pytest.fixture()
def fake(monkeypatch, tiny_cfg):
    from indextts_trt.runtime import gpu
    from indextts_trt.runtime.indextts2.stages import stage_specs

    rt = FakeCudart()
    trt = make_tensorrt(rt, stage_specs(tiny_cfg))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: rt)
    monkeypatch.setattr(gpu, "gpu_info", lambda: ("Fake GPU", "9.0"))
    return rt


def _profiles(spec, ranges: list[dict]) -> list[dict]:
    """Engine profiles (per input: [min, opt, max] shapes) from dim ranges."""
    out = []
    for r in ranges:
        out.append({t.name: [[d if isinstance(d, int) else r[d][i] for d in t.shape] for i in range(3)]
                    for t in spec.inputs})
    return out


def _full_range(spec) -> dict:
    return {d.name: (d.min, d.opt, d.max) for d in spec.free_dims}


# ------------------------------------------------------------------ the device KV cache


def test_device_cache_does_what_the_host_cache_does(fake):
    from indextts_trt.runtime.device_cache import DeviceKVCache

    rng = np.random.default_rng(0)
    L, rows, H, cap, hd = 3, 4, 2, 9, 5
    dev = Device(fake)
    s = dev.stream()
    d = DeviceKVCache(dev, s, L, rows, H, cap, hd, np.float32)
    h = HostKVCache(L, rows, H, cap, hd, np.float32)
    kv0 = rng.standard_normal((L, 2, 1, H, 4, hd)).astype(np.float32)
    d.load_prefix(kv0)
    h.load_prefix(kv0)
    np.testing.assert_array_equal(_view(d.ptr, d.shape, np.float32), h.array)
    new = rng.standard_normal((L, 2, rows, H, 1, hd)).astype(np.float32)
    new_ptr = dev.malloc(new.nbytes)
    dev.h2d(new_ptr, new, s)
    fake.calls.clear()
    d.write_device(new_ptr, np.full(rows, 4))  # one request: every row at one position
    h.write(new, np.full(rows, 4))
    assert fake.calls.count("memcpy2d") == 1
    np.testing.assert_array_equal(_view(d.ptr, d.shape, np.float32), h.array)
    fake.calls.clear()
    pos = np.array([5, 5, 7, 6])  # two requests of 2 beams, the second at two lengths: 3 runs
    d.write_device(new_ptr, pos)
    h.write(new, pos)
    assert fake.calls.count("memcpy3d") == 3
    np.testing.assert_array_equal(_view(d.ptr, d.shape, np.float32), h.array)
    d.reorder(np.array([0, 1, 3]), np.array([1, 0, 0]))  # a swap and a copy: sources are snapshot first
    h.reorder(np.array([0, 1, 3]), np.array([1, 0, 0]))
    np.testing.assert_array_equal(_view(d.ptr, d.shape, np.float32), h.array)
    d.grow(20)
    h.grow(20)
    np.testing.assert_array_equal(_view(d.ptr, d.shape, np.float32), h.array)
    with pytest.raises(Exception, match="outside its 20"):
        d.write_device(new_ptr, np.full(rows, 20))
    d.close()
    dev.free(new_ptr)
    dev.close()
    assert not fake.blocks  # everything allocated was freed


def test_device_cache_rebuild_and_row_prefix_do_what_the_host_cache_does(fake):
    """Serving: requests join (a prefix into some rows) and leave (rows kept, moved, capacity
    changed) the shared decode cache; the device copies give the host cache's result."""
    from indextts_trt.runtime.device_cache import DeviceKVCache

    rng = np.random.default_rng(2)
    L, rows, H, cap, hd = 2, 5, 3, 7, 4
    dev = Device(fake)
    s = dev.stream()
    d, h = DeviceKVCache(dev, s, L, rows, H, cap, hd, np.float32), HostKVCache(L, rows, H, cap, hd, np.float32)
    for r in range(rows):  # every row a different prefix
        kv0 = rng.standard_normal((L, 2, 1, H, 3 + r, hd)).astype(np.float32)
        d.load_prefix(kv0, slice(r, r + 1))
        h.load_prefix(kv0, slice(r, r + 1))
    for keep, n, c in ((np.array([4, 1, 2]), 4, 11), (np.array([3, 0]), 2, 5)):
        d.rebuild(keep, n, c)
        h.rebuild(keep, n, c)
        assert d.shape == h.array.shape
        np.testing.assert_array_equal(_view(d.ptr, d.shape, np.float32), h.array)
    d.close()
    dev.close()
    assert not fake.blocks


# ------------------------------------------------------------------ the runner


def _decode_runner(engine_dir, tiny_cfg, tmp_path, ranges=None, **kw):
    from indextts_trt.runtime.indextts2.stages import stage_specs
    from indextts_trt.runtime.trt_backend import TrtRunner

    spec = stage_specs(tiny_cfg)["gpt_decode"]
    eng = write_engine(tmp_path / "gpt_decode.engine", engine_dir / "gpt_decode.onnx", spec,
                       _profiles(spec, ranges or [_full_range(spec)]))
    return spec, TrtRunner(eng, spec, **kw)


def test_decode_runner_matches_onnxruntime_and_replays_a_cuda_graph(fake, engine_dir, tiny_cfg, tmp_path):
    from indextts_trt.runtime.ort_backend import OrtRunner

    spec, trt = _decode_runner(engine_dir, tiny_cfg, tmp_path)
    ort = OrtRunner(engine_dir / "gpt_decode.onnx", spec, threads=1)
    rng = np.random.default_rng(1)
    rows, cap = 3, 40
    dc, hc = trt.new_cache(rows, cap), ort.new_cache(rows, cap)
    kv0 = (rng.standard_normal(hc.array[:, :, :1, :, :12].shape) * 0.5).astype(np.float32)
    dc.load_prefix(kv0)
    hc.load_prefix(kv0)
    for step in range(4):
        feed = {"mel_ids": rng.integers(0, 97, (rows, 1)), "mel_pos": np.full((rows, 1), step + 2),
                "cache_len": np.full(rows, 12 + step)}
        feed = {k: np.asarray(v, np.int64) for k, v in feed.items()}
        a, b = trt.run(feed, cache=dc), ort.run(feed, cache=hc)
        np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-6)
        assert set(a) == {"logits"}  # kv_new went into the cache, not to the host
        np.testing.assert_allclose(_view(dc.ptr, dc.shape, np.float32), hc.array, atol=1e-6)
    assert fake.calls.count("graph_launch") == 3  # step 0: warm-up + capture; steps 1-3 replay it
    dc.close()
    trt.close()
    assert not fake.blocks


def test_failed_capture_falls_back_to_plain_enqueue(monkeypatch, engine_dir, tiny_cfg, tmp_path, caplog):
    from indextts_trt.runtime import gpu
    from indextts_trt.runtime.indextts2.stages import stage_specs

    rt = FakeCudart(fail_capture=True)
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(rt, stage_specs(tiny_cfg)))
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: rt)
    spec, trt = _decode_runner(engine_dir, tiny_cfg, tmp_path)
    cache = trt.new_cache(3, 30)
    feed = {"mel_ids": np.zeros((3, 1), np.int64), "mel_pos": np.full((3, 1), 2, np.int64),
            "cache_len": np.full(3, 5, np.int64)}
    first = trt.run(feed, cache=cache)["logits"]
    assert "CUDA graph capture failed" in caplog.text and not trt.use_cuda_graph
    second = trt.run(feed, cache=cache)["logits"]  # plain enqueues from now on, same numbers
    assert rt.calls.count("graph_launch") == 0 and np.isfinite(second).all() and first.shape == second.shape


def test_the_tightest_covering_profile_is_chosen(fake, engine_dir, tiny_cfg, tmp_path):
    from indextts_trt.runtime.indextts2.stages import stage_specs
    from indextts_trt.runtime.trt_backend import TrtRunner

    spec = stage_specs(tiny_cfg)["bigvgan"]
    short = {"T_mel": (1, 50, 64)}
    long_ = {"T_mel": (64, 200, spec.dim_map["T_mel"].max)}
    eng = write_engine(tmp_path / "bigvgan.engine", engine_dir / "bigvgan.onnx", spec, _profiles(spec, [long_, short]))
    r = TrtRunner(eng, spec)
    r.run({"mel": np.zeros((1, tiny_cfg.n_mels, 30), np.float32)})
    assert r.profile == 1
    r.run({"mel": np.zeros((1, tiny_cfg.n_mels, 64), np.float32)})
    assert r.profile == 1  # both cover 64: the short one is tighter
    r.run({"mel": np.zeros((1, tiny_cfg.n_mels, 100), np.float32)})
    assert r.profile == 0
    with pytest.raises(Exception, match="stage bigvgan: no optimization profile"):
        r.run({"mel": np.zeros((1, tiny_cfg.n_mels, spec.dim_map["T_mel"].max + 1), np.float32)})
    with pytest.raises(Exception, match="input mel is float16, the engine takes float32"):
        r.run({"mel": np.zeros((1, tiny_cfg.n_mels, 30), np.float16)})
    r.close()
    assert not fake.blocks
    with TrtRunner(eng, spec) as r2:  # the context manager frees what the runner took, on error too
        r2.run({"mel": np.zeros((1, tiny_cfg.n_mels, 30), np.float32)})
        assert fake.blocks
    assert not fake.blocks


def test_cfm_constants_go_up_once_and_x_stays_on_the_device(fake, engine_dir, tiny_cfg, tmp_path):
    from indextts_trt.runtime.cfm import solve_euler
    from indextts_trt.runtime.indextts2.stages import stage_specs
    from indextts_trt.runtime.ort_backend import OrtRunner
    from indextts_trt.runtime.trt_backend import TrtRunner

    spec = stage_specs(tiny_cfg)["dit_step"]
    eng = write_engine(tmp_path / "dit.engine", engine_dir / "dit_step.onnx", spec, _profiles(spec, [_full_range(spec)]))
    trt, ort = TrtRunner(eng, spec), OrtRunner(engine_dir / "dit_step.onnx", spec, threads=1)
    rng = np.random.default_rng(2)
    T, c = 37, tiny_cfg
    const = {"prompt_x": rng.standard_normal((1, c.n_mels, T)).astype(np.float32), "x_lens": np.array([T]),
             "prompt_len": np.array([9]), "style": rng.standard_normal((1, c.style_dim)).astype(np.float32),
             "cond": rng.standard_normal((1, T, c.s2mel.length_regulator.channels)).astype(np.float32),
             "cfg_rate": np.array([0.7], np.float32)}
    const = {k: v.astype(np.int64) if v.dtype.kind == "i" else v for k, v in const.items()}
    x0 = rng.standard_normal((1, c.n_mels, T)).astype(np.float32)
    out = {}
    for name, r in (("trt", trt), ("ort", ort)):
        r.set_constants(const)
        fake.calls.clear()
        out[name] = solve_euler(lambda feed, fetch: r.run(feed, feedback={"x_next": "x"}, fetch=fetch), x0,
                                const["prompt_len"], 5)
        r.clear_constants()
        if name == "trt":
            h2d, d2h = fake.calls.count("memcpy1"), fake.calls.count("memcpy2")
    np.testing.assert_allclose(out["trt"], out["ort"], atol=1e-5)
    assert h2d == 1 + 2 * 5  # x once, then only t and dt per step: the constants were already there
    assert d2h == 1  # only the last step's x came back
    trt.close()
    assert not fake.blocks


# ------------------------------------------------------------------ the whole pipeline


def _fake_trt_dir(engine_dir, tmp_path, tiny_cfg):
    """A copy of the tiny engines directory with stand-in engines recorded as a fp32 build."""
    from indextts_trt.export.manifest import save_manifest
    from indextts_trt.export.trt_plan import make_plan, write_plan
    from indextts_trt.runtime.files import sha256_file
    from indextts_trt.runtime.indextts2.stages import stage_specs
    from indextts_trt.runtime.manifest import load_manifest

    out = tmp_path / "eng"
    shutil.copytree(engine_dir, out)
    man, specs = load_manifest(out), stage_specs(tiny_cfg)
    plan = make_plan(out, man, specs, "fp32")
    write_plan(out, plan)
    for name, spec in specs.items():
        p = plan["stages"][name]
        profiles = [{t: [p_shape[k] for k in ("min", "opt", "max")] for t, p_shape in prof["shapes"].items()}
                    for prof in p["profiles"]]
        eng = write_engine(out / p["engine"], out / f"{name}.onnx", spec, profiles)
        man["stages"][name]["trt"] = {"stage": name, "engine": eng.name, "sha256": sha256_file(eng),
                                      "version": "0.0-fake", "gpu": "Fake GPU", "compute_capability": "9.0",
                                      "precision": "fp32"}
    save_manifest(out, man)
    return out


def test_the_pipeline_on_the_trt_backend_gives_the_onnxruntime_codes(fake, engine_dir, tiny_cfg, tmp_path,
                                                                     prompt_wav):
    from indextts_trt.runtime.options import RunOptions
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.sampling import SamplingOptions

    out = _fake_trt_dir(engine_dir, tmp_path, tiny_cfg)
    opts = RunOptions(sampling=SamplingOptions(max_new_tokens=70, min_new_tokens=40), diffusion_steps=3, seed=3)
    with open_pipeline(out, backend="ort", threads=1) as p_ort:
        a = p_ort.synthesize("Hello there.", prompt_wav, options=opts)
    with open_pipeline(out, backend="auto") as p_trt:
        assert p_trt.backend == "trt", p_trt.backend_reason
        b = p_trt.synthesize("Hello there.", prompt_wav, options=opts)
        assert p_trt.providers_in_use == ["TensorRT 0.0-fake"]
        devices = [r.dev for r in p_trt._runners.values()]
    assert [s.codes.tolist() for s in a.segments] == [s.codes.tolist() for s in b.segments]
    d = a.wav.astype(np.float64) - b.wav
    assert 10 * np.log10((a.wav.astype(np.float64) ** 2).sum() / max((d ** 2).sum(), 1e-30)) > 60
    assert not fake.blocks and not any(d.live or d.streams or d.graphs for d in devices)  # close() freed it all
    man = json.loads((out / "manifest.json").read_text())
    assert all(st["trt"]["engine"].endswith(".engine") for st in man["stages"].values())
