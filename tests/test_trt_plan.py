"""The TensorRT layer's plain-code half: profiles, precision plan, islands → nodes, cache keys,
engine compatibility, buffer plans, backend choice, and `build --precision fp16` without TensorRT.
The TensorRT-only tests at the end skip with a reason where TensorRT or a GPU is missing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from indextts_trt.export.trt_plan import StagePlan, island_nodes, make_plan, profiles_for
from indextts_trt.runtime.engine_plan import engine_compat_error, select_profile
from indextts_trt.runtime.indextts2.stages import stage_specs


def test_profiles_cover_every_input_and_split_long_ranges(full_cfg, tiny_cfg):
    specs = stage_specs(full_cfg)
    for name, spec in specs.items():
        profs = profiles_for(spec)
        for p in profs:
            assert set(p.shapes) == {t.name for t in spec.inputs}
            for t in spec.inputs:
                lo, opt, hi = (p.shapes[t.name][k] for k in ("min", "opt", "max"))
                assert len(lo) == len(t.shape) and all(a <= b <= c for a, b, c in zip(lo, opt, hi)), (name, t.name)
        # together the profiles cover the spec's whole range
        for d in spec.free_dims:
            assert min(p.dims[d.name][0] for p in profs) == d.min and max(p.dims[d.name][2] for p in profs) == d.max
    dit = profiles_for(specs["dit_step"])
    assert [p.name for p in dit] == ["short", "long"]
    assert dit[0].shapes["x"]["max"] == [specs["dit_step"].dim_map["B"].max, full_cfg.n_mels, 1024]
    assert dit[1].shapes["x"]["max"][2] == specs["dit_step"].dim_map["T"].max
    assert select_profile(dit, {"B": 1, "T": 600}) == 0 and select_profile(dit, {"B": 1, "T": 2000}) == 1
    assert select_profile(dit, {"B": 1, "T": 1024}) == 0  # the tighter of two covering profiles
    with pytest.raises(ValueError, match="no optimization profile covers .*5000"):
        select_profile(dit, {"B": 1, "T": 5000})
    # stages without a split, or whose range does not cross the boundary, get one profile
    assert [p.name for p in profiles_for(specs["vq2emb"])] == ["all"]
    assert [p.name for p in profiles_for(stage_specs(tiny_cfg)["gpt_decode"])] == ["all"]


def test_plan_fp32_and_cache_keys(engine_dir, tiny_cfg):
    from indextts_trt.runtime.manifest import load_manifest

    man = load_manifest(engine_dir)
    plan = make_plan(engine_dir, man, stage_specs(tiny_cfg), "fp32")
    assert set(plan["stages"]) == set(stage_specs(tiny_cfg)) and plan["tf32"] is False
    sp = StagePlan.from_json(json.loads(json.dumps(plan["stages"]["dit_step"])))  # JSON round trip
    assert sp.graph == "dit_step.onnx" and sp.graph_precision == "fp32" and sp.engine == "dit_step.fp32.engine"
    assert sp.graph_sha256 == man["stages"]["dit_step"]["files"]["dit_step.onnx"]
    assert sp.io["x"] == "float32" and sp.io["x_lens"] == "int64" and not sp.tf32
    assert not {"precision", "fp32_islands", "fp32_nodes"} & set(plan["stages"]["dit_step"])  # no builder precision
    k = sp.cache_key("10.1.0", "9.0")
    assert k == sp.cache_key("10.1.0", "9.0")
    other = profiles_for(stage_specs(tiny_cfg)["bigvgan"])
    changed = [sp.cache_key("10.2.0", "9.0"), sp.cache_key("10.1.0", "8.9"),
               StagePlan(**{**sp.__dict__, "tf32": True}).cache_key("10.1.0", "9.0"),
               StagePlan(**{**sp.__dict__, "builder_optimization_level": 5}).cache_key("10.1.0", "9.0"),
               StagePlan(**{**sp.__dict__, "profiles": other}).cache_key("10.1.0", "9.0"),
               StagePlan(**{**sp.__dict__, "workspace_bytes": 1}).cache_key("10.1.0", "9.0"),
               StagePlan(**{**sp.__dict__, "graph_sha256": "0" * 64}).cache_key("10.1.0", "9.0")]
    assert k not in changed and len(set(changed)) == len(changed)
    # what does not shape the engine is not in its key
    same = [StagePlan(**{**sp.__dict__, "notes": ["x"]}), StagePlan(**{**sp.__dict__, "engine": "other.engine"}),
            StagePlan(**{**sp.__dict__, "graph": "renamed.onnx"}), StagePlan(**{**sp.__dict__, "io": {}})]
    assert all(s.cache_key("10.1.0", "9.0") == k for s in same)
    assert make_plan(engine_dir, man, stage_specs(tiny_cfg), "fp32", tf32=True)["stages"]["dit_step"]["engine"] \
        == "dit_step.fp32.tf32.engine"
    with pytest.raises(ValueError, match="precision 'int8'"):
        make_plan(engine_dir, man, stage_specs(tiny_cfg), "int8")


def test_plan_fp16_builds_the_converted_graphs(engine_dir, tiny_cfg, tmp_path):
    from indextts_trt.export.mixed_precision import convert, io_policy
    from indextts_trt.runtime.files import sha256_file
    from indextts_trt.runtime.manifest import load_manifest

    man, specs = load_manifest(engine_dir), stage_specs(tiny_cfg)
    out = tmp_path / "eng"
    shutil.copytree(engine_dir, out)
    with pytest.raises(ValueError, match="no fp16 graph; convert it first"):
        make_plan(out, man, specs, "fp16")
    c = convert(out / "gpt_layer.onnx", out / "gpt_layer.fp16.onnx", "fp16", [], io_policy(specs["gpt_layer"], "fp16"))
    fp32 = {n: {"onnx": e["onnx"], "sha256": e["files"][e["onnx"]], "precision": "fp32", "note": "kept fp32: test"}
            for n, e in man["stages"].items()}
    graphs = {**fp32, "gpt_layer": {"onnx": c.path.name, "sha256": sha256_file(c.path), "precision": "fp16"}}
    plan = make_plan(out, man, specs, "fp16", graphs)
    gl = plan["stages"]["gpt_layer"]
    assert gl["graph"] == "gpt_layer.fp16.onnx" and gl["graph_precision"] == "fp16" and gl["engine"] == \
        "gpt_layer.fp16.engine"
    assert gl["io"] == {"latent": "float32", "projected": "float32"}  # read from the graph: fp32 at the boundary
    dit = plan["stages"]["dit_step"]
    assert dit["graph_precision"] == "fp32" and dit["notes"] == ["kept fp32: test"]
    with pytest.raises(ValueError, match="built fp32 in a fp16 plan without a reason"):
        make_plan(out, man, specs, "fp16", {**graphs, "dit_step": {**fp32["dit_step"], "note": ""}})
    with pytest.raises(ValueError, match="is bf16, the plan is for fp16"):
        make_plan(out, man, specs, "fp16", {**graphs, "vq2emb": {**fp32["vq2emb"], "precision": "bf16"}})
    # a plan from before precision-in-the-graph is refused with the command that remakes it
    from indextts_trt.export.trt_plan import write_plan
    from indextts_trt.runtime.engine_plan import load_plan

    write_plan(out, {**plan, "schema": 1})
    with pytest.raises(ValueError, match="predates precision-in-the-graph"):
        load_plan(out)


def test_island_nodes_follow_the_module_scopes(engine_dir):
    import onnx

    path = engine_dir / "dit_step.onnx"
    nodes = island_nodes(path, ["est.transformer.layers.0.ffn_norm"])
    g = onnx.load(str(path), load_external_data=False).graph
    scopes = {n.name: next(p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
              for n in g.node if any(p.key == "pkg.torch.onnx.name_scopes" for p in n.metadata_props)}
    assert nodes and all("'est.transformer.layers.0.ffn_norm'" in scopes[n] for n in nodes)
    assert not any("layers.1" in scopes[n] for n in nodes)
    assert len(island_nodes(path, [""])) == len(g.node) and island_nodes(path, []) == []


def test_engine_compatibility_messages():
    assert engine_compat_error(None, "10.1.0", "H100", "9.0") == "no engine was built"
    built = {"stage": "dit_step", "precision": "fp16", "version": "10.1.0", "gpu": "NVIDIA H100",
             "compute_capability": "9.0"}
    assert engine_compat_error(built, "10.1.0", "NVIDIA H100", "9.0") is None
    msg = engine_compat_error(built, "10.3.0", "NVIDIA L4", "8.9", "engines")
    assert "stage dit_step" in msg and "TensorRT 10.1.0 (this machine has 10.3.0)" in msg
    assert "compute capability 9.0 (NVIDIA H100; this one is 8.9, NVIDIA L4)" in msg
    assert "tts-export build --precision fp16 --checkpoints " in msg and msg.endswith(" --out engines`")
    assert "TensorRT" not in engine_compat_error({**built, "version": "10.3.0"}, "10.3.0", "L4", "8.9").split(
        "built for")[1].split("Rebuild")[0]  # only what differs is named


def test_backend_choice(engine_dir, tmp_path, monkeypatch):
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.runners import BackendError, choose_backend

    man = json.loads((engine_dir / "manifest.json").read_text())
    stages = list(man["stages"])
    b, why = choose_backend(engine_dir, man, stages, "auto")
    assert b == "ort" and why.startswith("no TensorRT engines in") and "--precision fp16" in why
    man["stages"]["dit_step"]["trt"] = {"engine": "dit_step.fp16.engine"}
    assert "no TensorRT engine for semantic_encoder" in choose_backend(engine_dir, man, stages, "auto")[1]
    assert "dit_step" not in choose_backend(engine_dir, man, stages, "auto")[1]
    with pytest.raises(BackendError, match="no TensorRT engine"):
        choose_backend(engine_dir, man, stages, "trt")
    for st in man["stages"].values():
        st["trt"] = {"stage": "x", "engine": "x.engine", "version": "10.1.0", "gpu": "H100", "compute_capability": "9.0"}
    b, why = choose_backend(engine_dir, man, stages, "auto")
    assert b == "ort" and why.startswith("TensorRT cannot run here")
    with open_pipeline(engine_dir, backend="auto") as pipe:
        assert pipe.backend == "ort"
    # where TensorRT runs, engines of another precision than asked are named, with the rebuild command
    import types

    from indextts_trt.export.trt_plan import write_plan
    from indextts_trt.runtime import gpu

    monkeypatch.setattr(gpu, "import_tensorrt", lambda: types.SimpleNamespace(__version__="10.16.1"))
    monkeypatch.setattr(gpu, "gpu_info", lambda: ("NVIDIA H100", "9.0"))
    d = tmp_path / "eng"
    d.mkdir()
    assert "of no known precision (no build plan)" in choose_backend(d, man, stages, "auto")[1]
    write_plan(d, {"schema": 2, "precision": "fp16", "stages": {}})
    why = choose_backend(d, man, stages, "auto", "fp32")[1]
    assert f"are fp16, not fp32: build fp32 ones with `tts-export build --precision fp32 --checkpoints" in why


def test_build_fp16_without_tensorrt_writes_graphs_and_plan_then_stops(tiny_ckpt, tmp_path):
    from typer.testing import CliRunner

    from indextts_trt.export.cli import app

    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: this test is about machines without it")
    except ImportError:
        pass
    out = tmp_path / "eng"
    r = CliRunner().invoke(app, ["build", "--checkpoints", str(tiny_ckpt), "--out", str(out), "--precision", "fp16",
                                 "--points", "opt", "--stage", "gpt_layer", "--stage", "length_regulator"])
    assert r.exit_code == 3, r.output
    assert "NO TensorRT ENGINE WAS BUILT" in r.output and "ModuleNotFoundError" in r.output
    assert (out / "gpt_layer.onnx").is_file() and (out / "length_regulator.onnx").is_file()
    plan = json.loads((out / "trt_plan.json").read_text())
    assert plan["precision"] == "fp16" and set(plan["stages"]) == {"gpt_layer", "length_regulator"}
    analysis = json.loads((out / "precision_fp16.json").read_text())
    assert set(analysis) == {"gpt_layer", "length_regulator"}
    assert "| gpt_layer | fp16 |" in (out / "precision_fp16_report.md").read_text()
    man = json.loads((out / "manifest.json").read_text())
    assert all(man["stages"][n]["graphs"]["fp16"]["parity"]["passed"] for n in ("gpt_layer", "length_regulator"))
    assert not list(out.glob("*.engine"))
    # the engines would be built from the converted graphs, which ONNX Runtime loads
    for name in ("gpt_layer", "length_regulator"):
        assert plan["stages"][name]["graph"] == f"{name}.fp16.onnx" and (out / f"{name}.fp16.onnx").is_file()


# ------------------------------------------------------------------ TensorRT only


def _need_trt():
    from indextts_trt.runtime.gpu import TensorRTUnavailable, gpu_info, import_tensorrt

    try:
        import_tensorrt()
        gpu_info()
    except TensorRTUnavailable as e:
        pytest.skip(f"needs TensorRT and an NVIDIA GPU: {e}")


@pytest.mark.trt
def test_trt_engines_build_and_match_onnxruntime(tiny_ckpt, engine_dir, tmp_path):
    _need_trt()
    from indextts_trt.export.engines import build_and_check, plan_engines

    from indextts_trt.export.precision_graphs import make_precision_graphs

    out = tmp_path / "eng"
    shutil.copytree(engine_dir, out)
    make_precision_graphs(tiny_ckpt, out, "fp16", ("opt",), progress=False)
    plan = plan_engines(out, "fp16")
    assert len(build_and_check(out, plan, None, force=True)) == len(plan["stages"])


@pytest.mark.trt
def test_trt_pipeline_gives_the_onnxruntime_codes(tiny_ckpt, engine_dir, tmp_path, prompt_wav):
    _need_trt()
    from indextts_trt.export.engines import build_and_check, plan_engines
    from indextts_trt.runtime.options import RunOptions
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.sampling import SamplingOptions

    out = tmp_path / "eng32"
    shutil.copytree(engine_dir, out)
    build_and_check(out, plan_engines(out, "fp32"), None, force=True)
    opts = RunOptions(sampling=SamplingOptions.greedy(max_new_tokens=30), diffusion_steps=3)
    with open_pipeline(out, backend="ort") as pa, open_pipeline(out, backend="trt") as pb:
        a = pa.synthesize("Hello there.", prompt_wav, options=opts)
        b = pb.synthesize("Hello there.", prompt_wav, options=opts)
    assert [s.codes.tolist() for s in a.segments] == [s.codes.tolist() for s in b.segments]
    d = a.wav.astype(np.float64) - b.wav
    assert 10 * np.log10((a.wav.astype(np.float64) ** 2).sum() / max((d ** 2).sum(), 1e-30)) > 40


def test_tts_run_backend_trt_refuses_with_the_rebuild_command(engine_dir, tiny_ckpt, tmp_path):
    from typer.testing import CliRunner

    from indextts_trt.runtime.cli import app

    out = tmp_path / "o.wav"
    r = CliRunner().invoke(app, ["--engine-dir", str(engine_dir), "--backend", "trt", "--out", str(out)])
    assert r.exit_code == 1 and "no TensorRT engines in" in r.output  # the directory's problem: a data error
    # the command rebuilds the directory as it was built: its checkpoints, its one parity point
    want = f"tts-export build --precision fp16 --checkpoints {tiny_ckpt} --out {engine_dir} --points opt"
    assert want in " ".join(r.output.split()) and not out.exists()
    bad = CliRunner().invoke(app, ["--engine-dir", str(engine_dir), "--backend", "tensorrt", "--out", str(out)])
    assert bad.exit_code != 0 and "use auto, trt" in bad.output
