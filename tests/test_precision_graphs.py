"""The fp16 graphs of a tiny build (export/precision_graphs.py): made per stage, judged under ONNX
Runtime CPU against the fp32 PyTorch reference at the four parity points, recorded in the
manifest, cached, with an fp32 fallback that says why; and run end to end by the runtime
(``--precision fp16``) beside fp32."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto

pytest.importorskip("modelopt.onnx.autocast")

from indextts_trt.export import precision_graphs as pg  # noqa: E402

POINTS = ("opt", "max")  # the range maximum is where fp16 overflows; all four: tts-export build


@pytest.fixture(scope="module")
def fp16_dir(engine_dir, tiny_ckpt, tmp_path_factory):
    """A copy of the tiny build with its fp16 graphs made (the shared build stays fp32-only)."""
    out = tmp_path_factory.mktemp("fp16") / "engines"
    shutil.copytree(engine_dir, out)
    res = pg.make_precision_graphs(tiny_ckpt, out, "fp16", POINTS, progress=False, log_line=lambda s: None)
    return out, res


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def test_every_stage_gets_a_gated_fp16_graph_or_an_fp32_fallback_with_its_reason(fp16_dir):
    out, res = fp16_dir
    m = _manifest(out)
    assert [r.stage for r in res] == list(m["stages"])
    in_fp16 = 0
    for name, entry in m["stages"].items():
        g = entry["graphs"]["fp16"]
        for f, h in g["files"].items():  # what the manifest records is what is on disk
            from indextts_trt.runtime.files import sha256_file

            assert sha256_file(out / f) == h and (out / f).stat().st_size == g["sizes"][f]
        assert g["parity"]["passed"] is True
        if g["precision"] == "fp32":
            assert g["chosen"] == "fp32 fallback" and g["onnx"] == entry["onnx"]
            assert "fails parity even with every candidate island" in g["note"]
            assert g["trials"] and not any(t["passed"] for t in g["trials"])
            assert not (out / f"{name}.fp16.onnx").exists()
            continue
        in_fp16 += 1
        assert g["onnx"] == f"{name}.fp16.onnx" and g["trials"][-1]["passed"]
        assert all(not t["passed"] for t in g["trials"][:-1])  # the first passing trial is kept
        assert {c["point"] for c in g["parity"]["checks"]} == set(POINTS)
        assert all(c["passed"] for c in g["parity"]["checks"])
        model = onnx.load(str(out / g["onnx"]), load_external_data=False)
        assert {i.data_type for i in model.graph.initializer if i.data_type in (TensorProto.FLOAT,
                                                                                 TensorProto.FLOAT16)} >= {
            TensorProto.FLOAT16}  # really converted
    # measured on the tiny build: semantic_codec's exact codes need fp32 (test_mixed_precision.py);
    # the other stages pass in fp16
    assert in_fp16 >= len(m["stages"]) - 2
    report = (out / "precision_fp16_report.md").read_text()
    assert all(f"| {n} |" in report for n in m["stages"])


def test_a_second_run_reuses_every_graph(fp16_dir, tiny_ckpt):
    out, _ = fp16_dir
    before = {f: (out / f).stat().st_mtime_ns for f in (p.name for p in out.glob("*.fp16.onnx"))}
    res = pg.make_precision_graphs(tiny_ckpt, out, "fp16", POINTS, progress=False, log_line=lambda s: None)
    assert {r.chosen for r in res} == {"cached"}
    assert before == {f: (out / f).stat().st_mtime_ns for f in before}


def _only(out, stage):
    m = _manifest(out)
    full = dict(m["stages"])
    m["stages"] = {stage: full[stage]}
    (out / "manifest.json").write_text(json.dumps(m))
    return full


def test_a_stage_no_island_set_saves_falls_back_to_fp32_and_says_why(engine_dir, tiny_ckpt, tmp_path, monkeypatch):
    import dataclasses

    out = tmp_path / "engines"
    shutil.copytree(engine_dir, out)
    _only(out, "gpt_layer")
    real = pg._Gate.judge
    seen = []

    def failing(self, path):  # as if every converted graph were beyond the fp16 tolerance
        seen.append(path.name)
        return [dataclasses.replace(c, passed=False, measure=7.0) for c in real(self, path)]

    monkeypatch.setattr(pg._Gate, "judge", failing)
    (r,) = pg.make_precision_graphs(tiny_ckpt, out, "fp16", ("opt",), progress=False, log_line=lambda s: None)
    assert r.precision == "fp32" and r.chosen == "fp32 fallback" and len(seen) == len(r.trials) >= 1
    g = _manifest(out)["stages"]["gpt_layer"]["graphs"]["fp16"]
    assert g["onnx"] == "gpt_layer.onnx" and "projected at opt: 7 vs" in g["note"]
    assert not (out / "gpt_layer.fp16.onnx").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".build-")]


def test_the_runtime_runs_the_fp16_graphs_beside_fp32(fp16_dir, prompt_wav):
    """Greedy codes and audio of the tiny pipeline, fp16 graphs against fp32 ones. Measured here
    (tiny random weights, 40 codes): the codes agree exactly and the wave error is small; the
    bounds below leave room, but a graph that computed something else would fail them."""
    from indextts_trt.runtime.options import RunOptions
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.sampling import SamplingOptions

    out, _ = fp16_dir
    opts = RunOptions(sampling=SamplingOptions.greedy(max_new_tokens=40), diffusion_steps=4, seed=3)
    res = {}
    for p in ("fp32", "fp16"):
        with open_pipeline(out, threads=2, precision=p) as pipe:
            assert pipe.precision == p
            res[p] = pipe.synthesize("Hello there, world.", prompt_wav, options=opts)
    c32 = np.concatenate([s.codes for s in res["fp32"].segments])
    c16 = np.concatenate([s.codes for s in res["fp16"].segments])
    n = min(len(c32), len(c16))
    agree = float(np.mean(c32[:n] == c16[:n])) if n else 0.0
    assert len(c32) == len(c16) and agree >= 0.95, (len(c32), len(c16), agree)
    w32, w16 = res["fp32"].wav.astype(np.float64), res["fp16"].wav.astype(np.float64)
    assert w32.shape == w16.shape
    snr = 10 * np.log10(np.sum(w32**2) / max(np.sum((w32 - w16) ** 2), 1e-12))
    assert snr > 10.0, snr
    assert not np.array_equal(w32, w16)  # the fp16 graphs did run


def test_tts_run_precision_flag_and_the_build_without_tensorrt(fp16_dir, tiny_ckpt, tmp_path):
    out, _ = fp16_dir
    wav = tmp_path / "a.wav"
    r = subprocess.run([sys.executable, "-m", "indextts_trt.runtime.cli", "--engine-dir", str(out), "--precision",
                        "fp16", "--backend", "ort", "--max-codes", "12", "--diffusion-steps", "2", "--text", "Hi.",
                        "--out", str(wav)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert wav.is_file() and "fp16 graphs" in r.stdout
    # the directory already has every fp32 and fp16 graph: build --precision fp16 checks them, writes
    # the plan, then stops where TensorRT is needed
    r = subprocess.run([sys.executable, "-m", "indextts_trt.export.cli", "build", "--checkpoints", str(tiny_ckpt),
                        "--out", str(out), "--precision", "fp16", "--points", "opt"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 3, (r.stdout[-2000:], r.stderr[-2000:])
    assert "NO TensorRT ENGINE WAS BUILT" in r.stderr and "--precision fp16" in r.stderr
    plan = json.loads((out / "trt_plan.json").read_text())
    m = _manifest(out)
    for name, sp in plan["stages"].items():
        assert sp["graph"] == m["stages"][name]["graphs"]["fp16"]["onnx"]
        assert sp["graph_precision"] == m["stages"][name]["graphs"]["fp16"]["precision"]


def test_bf16_graphs_are_recorded_ungated_and_the_runtime_refuses_them(engine_dir, tiny_ckpt, tmp_path):
    from indextts_trt.runtime.pipeline import EngineError, open_pipeline

    out = tmp_path / "engines"
    shutil.copytree(engine_dir, out)
    full = _only(out, "gpt_layer")
    (r,) = pg.make_precision_graphs(tiny_ckpt, out, "bf16", ("opt",), progress=False, log_line=lambda s: None)
    m = _manifest(out)
    g = m["stages"]["gpt_layer"]["graphs"]["bf16"]
    assert g["precision"] == "bf16" and g["parity"]["passed"] is None and "no bf16 kernels" in g["note"]
    assert (out / "gpt_layer.bf16.onnx").is_file()
    m["stages"] = {**full, "gpt_layer": m["stages"]["gpt_layer"]}
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="no bf16 graph for semantic_encoder"):
        open_pipeline(out, precision="bf16")
    for name, entry in m["stages"].items():  # every stage with a record like gpt_layer's: still not gated
        entry.setdefault("graphs", {})["bf16"] = {**g, "onnx": entry["onnx"], "files": entry["files"]}
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="not gated"):
        open_pipeline(out, precision="bf16")
