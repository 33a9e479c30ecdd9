"""After the gated ONNX graphs (fp32, and fp16/bf16 from ``precision_graphs``): the TensorRT
build plan → the engines → their parity with ONNX Runtime.

The plan is plain code and runs everywhere; it is written (``trt_plan.json``) before TensorRT is
even imported, so a machine without TensorRT still gets the full plan and a clear statement that
no engine was built and why.
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


def plan_engines(out: Path, precision: str, tf32: bool = False, log=print) -> dict:
    """The TensorRT build plan from the directory's graphs: the fp32 exports, or the gated
    ``precision`` graphs ``precision_graphs.make_precision_graphs`` recorded in the manifest."""
    from .precision_graphs import plan_graphs

    manifest = load_manifest(out)
    specs = _specs(out, manifest)
    graphs = plan_graphs(manifest, precision) if precision != "fp32" else None
    plan = make_plan(out, manifest, specs, precision, graphs, tf32=tf32)
    write_plan(out, plan)
    log(f"TensorRT build plan: {out / PLAN_FILE} ({len(plan['stages'])} stages, {precision}"
        f"{', TF32 allowed' if tf32 else ''})")
    return plan


def build_and_check(out: Path, plan: dict, stages: list[str] | None, force: bool, log=print) -> list[str]:
    """Build the planned engines (TensorRT required) and gate each on parity with ONNX Runtime at
    every profile's opt shape, with the spec's tolerance for the engine's precision. A failing
    engine is removed and fails the build."""
    from indextts_trt.runtime.ort_backend import OrtRunner
    from indextts_trt.runtime.trt_backend import TrtRunner

    from .parity import judge
    from .trt_build import EngineBuildError, build_engines
    from .variant import export_variant

    manifest = load_manifest(out)
    built = build_engines(out, plan, manifest, stages, force, log)
    save_manifest(out, manifest)
    specs, sources = _specs(out, manifest), export_variant(manifest["variant"]).sources
    failed = []
    for name in built:
        spec, entry = specs[name], manifest["stages"][name]
        # TF32 rounds matmul inputs to a 10-bit mantissa, fp16's: fp32 engines built with it are
        # judged at the fp16 tolerances, never at fp32's
        judged_as = "fp16" if plan.get("tf32") and entry["trt"]["precision"] == "fp32" else entry["trt"]["precision"]
        checks = []
        try:
            with TrtRunner(out / entry["trt"]["engine"], spec, plan["stages"][name]) as trt_stage, \
                    OrtRunner(out / entry["onnx"], spec) as ort_stage:
                for prof in trt_stage.profiles:
                    sizes = spec.resolve({d: v[1] for d, v in prof.dims.items()})
                    feed = sources[name].sampler(spec, sizes, np.random.default_rng(7))
                    ref, got = ort_stage.run(feed), trt_stage.run(feed)
                    for t in spec.outputs:
                        ok, err, measure, limit = judge(ref[t.name], got[t.name], spec.tolerance(t.name, judged_as))
                        checks.append({"profile": prof.name, "output": t.name, "max_abs_err": err,
                                       "measure": measure, "limit": limit, "passed": ok})
        except Exception as e:  # noqa: BLE001 - the engine cannot be run: it is not kept, and the stage is named
            (out / entry["trt"]["engine"]).unlink(missing_ok=True)
            entry["trt"] = None
            save_manifest(out, manifest)
            raise EngineBuildError(f"stage {name}: the built engine does not run: {type(e).__name__}: {e}") from None
        entry["trt"]["parity"] = {"vs": "onnxruntime CPU, fp32 graph", "judged_as": judged_as, "checks": checks,
                                  "passed": all(c["passed"] for c in checks)}
        if not entry["trt"]["parity"]["passed"]:
            failed.append(name)
            (out / entry["trt"]["engine"]).unlink(missing_ok=True)
            entry["trt"] = None
        save_manifest(out, manifest)
    if failed:
        raise EngineBuildError(f"TensorRT parity failed for {', '.join(failed)} (engines removed); see the manifest")
    return built


__all__ = ["plan_engines", "build_and_check"]
