"""After the ONNX graphs: precision analysis → build plan → TensorRT engines → parity vs ONNX Runtime.

The first two steps are plain code and run everywhere; they are written to the engines directory
(``precision_<p>.json`` / ``precision_report.md``, ``trt_plan.json``) before TensorRT is even
imported, so a machine without TensorRT still gets the full plan and a clear statement that no
engine was built and why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from indextts_trt.runtime.engine_plan import PLAN_FILE
from indextts_trt.runtime.manifest import load_manifest
from indextts_trt.runtime.variant import get_variant

from .manifest import save_manifest
from .trt_plan import make_plan, write_plan


def _specs(out: Path, manifest: dict) -> dict:
    """The stage specs of a built directory, from its variant and its copy of config.yaml."""
    variant = get_variant(manifest["variant"])
    return variant.stage_specs(variant.load_config(out / "config.yaml"))


def precision_analysis(checkpoints, out: Path, precision: str, stages: list[str], progress: bool, log) -> dict:
    """stage -> analysis JSON, reusing a stored result whose graph (sha256) is unchanged."""
    from .precision import analyze_stage, markdown
    from .variant import ReferenceModels

    manifest = load_manifest(out)
    path = out / f"precision_{precision}.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    models = ReferenceModels(checkpoints)
    specs, sources = models.variant.runtime.stage_specs(models.cfg), models.variant.sources
    results = {}
    from tqdm import tqdm

    for name in tqdm(stages, desc=f"{precision} analysis", unit="stage", disable=not progress):
        sha = manifest["stages"][name]["files"][manifest["stages"][name]["onnx"]]
        if name in stored and stored[name].get("onnx_sha256") == sha:
            results[name] = stored[name]
            continue
        r = analyze_stage(models.adapter(name), specs[name], sources[name].sampler, precision)
        results[name] = {**r.to_json(), "onnx_sha256": sha}
        later = stages[stages.index(name) + 1:]
        if all(sources[s].model != sources[name].model for s in later):
            models.release(sources[name].model)  # full size: GBs per model
        path.write_text(json.dumps({**stored, **results}, indent=1))
    from .precision import StagePrecision

    objs = [StagePrecision(**{k: v for k, v in results[n].items() if k != "onnx_sha256"}) for n in stages]
    (out / "precision_report.md").write_text(markdown(objs, f"{precision} safety analysis ({out})"))
    log(f"{precision} analysis: {sum(not o.passed_without for o in objs)} of {len(objs)} stages need fp32 islands; "
        f"report: {out / 'precision_report.md'}")
    return results


def plan_engines(checkpoints, out: Path, precision: str, progress: bool = True, log=print) -> dict:
    manifest = load_manifest(out)
    specs = _specs(out, manifest)
    graphs = None
    if precision != "fp32":
        from .mixed_precision import convert_stages

        analysis = precision_analysis(checkpoints, out, precision, list(manifest["stages"]), progress, log)
        graphs = convert_stages(out, manifest, specs, precision, {n: a["islands"] for n, a in analysis.items()}, log)
    plan = make_plan(out, manifest, specs, precision, graphs)
    write_plan(out, plan)
    log(f"TensorRT build plan: {out / PLAN_FILE} ({len(plan['stages'])} stages, {precision})")
    return plan


def build_and_check(out: Path, plan: dict, stages: list[str] | None, force: bool, log=print) -> list[str]:
    """Build the planned engines (TensorRT required) and gate each on parity with ONNX Runtime at
    every profile's opt shape, with the spec's tolerance for the engine's precision. A failing
    engine is removed and fails the build."""
    from indextts_trt.runtime.ort_backend import OrtRunner
    from indextts_trt.runtime.trt_backend import TrtRunner

    from .parity import judge
    from .trt_build import build_engines
    from .variant import export_variant

    manifest = load_manifest(out)
    built = build_engines(out, plan, manifest, stages, force, log)
    save_manifest(out, manifest)
    specs, sources = _specs(out, manifest), export_variant(manifest["variant"]).sources
    failed = []
    for name in built:
        spec, entry = specs[name], manifest["stages"][name]
        trt_stage = TrtRunner(out / entry["trt"]["engine"], spec, plan["stages"][name])
        ort_stage = OrtRunner(out / entry["onnx"], spec)
        checks = []
        for prof in trt_stage.profiles:
            sizes = spec.resolve({d: v[1] for d, v in prof.dims.items()})
            feed = sources[name].sampler(spec, sizes, np.random.default_rng(7))
            ref, got = ort_stage.run(feed), trt_stage.run(feed)
            for t in spec.outputs:
                ok, err, measure, limit = judge(ref[t.name], got[t.name], spec.tolerance(t.name, entry["trt"]["precision"]))
                checks.append({"profile": prof.name, "output": t.name, "max_abs_err": err, "measure": measure,
                               "limit": limit, "passed": ok})
        trt_stage.close()
        ort_stage.close()
        entry["trt"]["parity"] = {"vs": "onnxruntime CPU", "checks": checks, "passed": all(c["passed"] for c in checks)}
        if not entry["trt"]["parity"]["passed"]:
            failed.append(name)
            (out / entry["trt"]["engine"]).unlink(missing_ok=True)
            entry["trt"] = None
        save_manifest(out, manifest)
    if failed:
        raise RuntimeError(f"TensorRT parity failed for {', '.join(failed)} (engines removed); see the manifest")
    return built


__all__ = ["precision_analysis", "plan_engines", "build_and_check"]
