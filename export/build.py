"""``tts-export build``: checkpoints → one ONNX graph per stage + manifest + parity report.

The checkpoint's ``config.yaml`` names the model variant; its export half says where each stage's
reference comes from. Per stage, two keys decide what to redo:
- the **graph key** covers exactly what shapes the graph: the spec's graph fields (names, dtypes,
  min/max, derived dims, aliasing), the opset, the code that traces it (the variant's reference
  models, adapters and patches, and the exporter), the exporter's library versions and the
  checkpoint files the stage reads. Graphs are fp32: no precision is in it;
- the **check key** covers what the parity verdict depends on beyond the graph: the spec's
  tolerances and opt sizes, the parity points, the gate's code and ONNX Runtime's version.
A stage whose graph key matches (and whose files still hash as recorded) is not re-exported; if
only its check key changed, the existing graph is judged again. Otherwise it is exported into a
temporary directory, gated, and only then moved into place. A failed stage leaves nothing behind;
the build then exits non-zero with a table. One build at a time per directory (a lock); the
temporary directories of a killed build are removed by the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indextts_trt.runtime.errors import OptionError, UserError
from indextts_trt.runtime.files import checkpoint_source, sha256_file, write_text_atomic

from .manifest import cache_key, files_fingerprint, library_versions, open_manifest, save_manifest, tool_version
from .onnx_export import OPSET, export_sizes, export_stage
from .parity import OutputCheck, check_stage, failure_table
from .variant import ReferenceModels, run_reference

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
EXPORTER_CODE = (_HERE / "onnx_export.py",)
GATE_CODE = (_HERE / "parity.py",)
ALL_POINTS = ("opt", "min", "awkward", "max")
TMP_PREFIX = ".build-"


class BuildError(UserError, RuntimeError):
    """The build cannot run or a stage failed (exit code 1); parity failures are in the report."""


@dataclass
class BuildReport:
    out: Path
    built: list[str] = field(default_factory=list)
    rejudged: list[str] = field(default_factory=list)  # graph kept, parity run again (its check key changed)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    checks: list[OutputCheck] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def _ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create output directory {out}: {e}") from None
    if not os.access(out, os.W_OK):
        raise BuildError(f"output directory {out} is not writable")


def clean_stale_temporaries(out: Path, host_files: tuple[str, ...] = ()) -> list[str]:
    """Remove what a killed build left (only ever called under the lock): its ``.build-<stage>-*``
    export directories and the temporary files of the atomic writes it makes at the top level
    (``.manifest.json.*.tmp``, ``.parity_report.md.*.tmp``, host files). Other tools' temporaries
    (a ``tts-export plan`` writing its plan) are left alone."""
    gone = []
    for p in out.glob(f"{TMP_PREFIX}*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    ours = ("manifest.json", "parity_report.md", *host_files)
    for p in out.glob(".*.tmp"):
        if p.is_file() and any(p.name.startswith(f".{name}.") for name in ours):
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


def build(checkpoints: str | Path, out: str | Path, stages: list[str] | None = None, force: bool = False,
          points: tuple[str, ...] = ALL_POINTS, progress: bool = True) -> BuildReport:
    from filelock import FileLock, Timeout

    out = Path(out)
    models = ReferenceModels(checkpoints)
    ev = models.variant
    specs = ev.runtime.stage_specs(models.cfg)
    chosen = list(stages) if stages else list(specs)
    unknown = [s for s in chosen if s not in specs]
    if unknown:
        raise OptionError("stages", unknown, f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(specs)}")
    if not points or any(p not in ALL_POINTS for p in points):
        raise OptionError("points", ",".join(points), f"use a comma-separated subset of {', '.join(ALL_POINTS)}")
    chosen = [s for s in specs if s in chosen]  # in pipeline order
    _check_out_dir(out)
    try:
        with FileLock(str(out / ".build.lock"), timeout=0):
            gone = clean_stale_temporaries(out, ev.runtime.host_files)
            if gone:
                log.info("removed what a stopped build left: %s", ", ".join(gone))
            return _build(models, specs, chosen, out, force, points, progress)
    except Timeout:
        raise BuildError(f"another tts-export build is writing {out}; wait for it or use another --out") from None


def _build(models: ReferenceModels, specs: dict, chosen: list[str], out: Path, force: bool, points: tuple[str, ...],
           progress: bool) -> BuildReport:
    from tqdm import tqdm

    ev = models.variant
    manifest = open_manifest(out, ev.name)
    file_hashes: dict[str, str] = {}

    def hashes_for(model: str) -> dict[str, str]:
        for k, path in models.files(model).items():
            if k not in file_hashes:  # what the loader reads: a converted safetensors copy when present
                file_hashes[k] = sha256_file(checkpoint_source(path))
        return {k: file_hashes[k] for k in ev.models[model].files}

    manifest["checkpoints"]["path"] = str(Path(models.layout.root).resolve())
    rep = BuildReport(out=out)
    versions = library_versions()
    code = files_fingerprint([*ev.code_files, *EXPORTER_CODE])
    gate = {"code": files_fingerprint(GATE_CODE), "onnxruntime": versions["onnxruntime"], "points": list(points)}
    bar = tqdm(chosen, desc="tts-export build", unit="stage", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        spec, src = specs[name], ev.sources[name]
        key = cache_key({"graph": spec.graph_key(), "opset": OPSET, "code": code, "files": hashes_for(src.model),
                         "versions": {k: versions[k] for k in ("torch", "onnx", "onnxscript")}})
        check = cache_key({"spec": spec.check_key(), **gate})
        entry = manifest["stages"].get(name)
        intact = (not force and entry and entry.get("cache_key") == key
                  and all((out / f).is_file() and sha256_file(out / f) == h for f, h in entry["files"].items()))
        if intact and entry["parity"].get("passed") and entry["parity"].get("check_key") == check:
            rep.skipped.append(name)
            _release_unneeded(models, chosen, name)
            continue
        t0 = time.perf_counter()
        module = models.adapter(name)
        with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{name}-", dir=out) as tmp:
            if intact:  # the graph is what this build would write: judge it again, do not re-export
                onnx_dir, produced = out, sorted(entry["files"])
            else:
                onnx_dir = Path(tmp)
                meta = {"indextts_trt.stage": name, "indextts_trt.variant": ev.name,
                        "indextts_trt.graph_key": spec.graph_key(), "indextts_trt.cache_key": key,
                        "indextts_trt.version": tool_version(),
                        "indextts_trt.inputs": ",".join(t.name for t in spec.inputs),
                        "indextts_trt.outputs": ",".join(t.name for t in spec.outputs)}
                feed = src.sampler(spec, export_sizes(spec), np.random.default_rng(0))
                try:
                    with src.patch() if src.patch else contextlib.nullcontext():
                        export_stage(module, spec, feed, onnx_dir / f"{name}.onnx", meta)
                except Exception as e:  # an exporter failure fails this stage, named, like a parity failure
                    raise BuildError(f"stage {name}: export failed: {type(e).__name__}: {e}") from e
                produced = sorted(p.name for p in onnx_dir.iterdir())
            try:
                sess = _ort_session(onnx_dir / f"{name}.onnx")
            except Exception as e:
                raise BuildError(f"stage {name}: ONNX Runtime cannot load the graph: {type(e).__name__}: {e}") from e
            checks = check_stage(spec, lambda f: run_reference(module, spec, f),
                                 lambda f: dict(zip([o.name for o in spec.outputs], sess.run(None, f))),
                                 src.sampler, precision="fp32", points=points)
            del sess
            rep.checks.extend(checks)
            rep.seconds[name] = time.perf_counter() - t0
            if not all(c.passed for c in checks):
                rep.failed.append(name)
                if intact:  # a graph that no longer passes is not left in the manifest as passing
                    entry["parity"] = {"passed": False, "check_key": check, "checks": [c.to_json() for c in checks]}
                    save_manifest(out, manifest)
                _release_unneeded(models, chosen, name)
                continue  # the temporary directory (and the bad graph) is removed here
            if not intact:
                for f in produced:
                    os.replace(onnx_dir / f, out / f)
                for g in ((entry or {}).get("graphs") or {}).values():  # converted from the graph just replaced
                    for f in g.get("files", {}):
                        if f not in produced:
                            (out / f).unlink(missing_ok=True)
        manifest["stages"][name] = {
            "description": spec.description, "files": {f: sha256_file(out / f) for f in produced},
            "sizes": {f: (out / f).stat().st_size for f in produced},  # checked at every load (runtime)
            "onnx": f"{name}.onnx", "graph_key": spec.graph_key(), "cache_key": key, "opset": OPSET,
            "precision": "fp32",
            "dims": {d.name: {"min": d.min, "opt": d.opt, "max": d.max} for d in spec.dims},
            "derived": dict(spec.derived),
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in spec.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in spec.outputs],
            "checkpoint_files": hashes_for(src.model), "export_seconds": round(rep.seconds[name], 2),
            "parity": {"passed": True, "precision": "fp32", "check_key": check, "checks": [c.to_json() for c in checks]},
            # the fp16/bf16 graphs made from this graph (precision_graphs.py); a new graph drops them
            "graphs": (entry or {}).get("graphs", {}) if intact else {},
        }
        save_manifest(out, manifest)
        (rep.rejudged if intact else rep.built).append(name)
        _release_unneeded(models, chosen, name)
    for model in ev.host_models:  # the host files read these: record them, so a mixed directory shows
        hashes_for(model)
    manifest["checkpoints"]["files"] = dict(file_hashes)
    manifest["host_files"] = ev.write_host_files(models, out)
    manifest["host_sizes"] = {f: (out / f).stat().st_size for f in manifest["host_files"]}
    save_manifest(out, manifest)
    _write_report(out, manifest, rep)
    return rep


def _release_unneeded(models: ReferenceModels, chosen: list[str], done: str) -> None:
    """Free a reference model once no later stage of this build reads it (full size: GB each)."""
    import gc

    ev = models.variant
    later = chosen[chosen.index(done) + 1:]
    model = ev.sources[done].model
    if model not in ev.host_models and all(ev.sources[s].model != model for s in later):
        models.release(model)
        gc.collect()


def _write_report(out: Path, manifest: dict, rep: BuildReport) -> None:
    """Markdown table of every stage's parity checks (this run's failures included)."""
    rows = [c for st in manifest["stages"].values() for c in st["parity"]["checks"]]
    rows += [c.to_json() for c in rep.checks if c.stage in rep.failed and c.stage not in manifest["stages"]]
    lines = ["# Parity report (ONNX Runtime CPU vs PyTorch reference, fp32)", "",
             "measure: max (or quantile) of |err| / (atol + rtol·|ref|), passing at ≤ 1; SNR in dB; mismatches", "",
             "| stage | point | sizes | output | stat | max abs err | measure | limit | ok |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in rows:
        lines.append(f"| {c['stage']} | {c['point']} | {c['sizes']} | {c['output']} | {c['stat']} | "
                     f"{c['max_abs_err']:.3g} | {c['measure']:.3g} | {c['limit']} | {'yes' if c['passed'] else '**NO**'} |")
    write_text_atomic(out / "parity_report.md", "\n".join(lines) + "\n")


__all__ = ["build", "BuildReport", "BuildError", "failure_table", "clean_stale_temporaries"]
