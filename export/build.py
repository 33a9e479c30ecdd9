"""``tts-export build``: checkpoints → one ONNX graph per stage + manifest + parity report.

Per stage: skip when the cache key (spec hash, precision, opset, tool/library versions, the
checkpoint files it reads) matches and its files still hash as recorded; otherwise export into a
temporary directory, run the parity gate, and only then move the files into place and update the
manifest. A failed stage leaves nothing behind; the build then exits non-zero with a table.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indextts_trt.runtime.stages import STAGE_ORDER, stage_specs

from .manifest import cache_key, code_fingerprint, library_versions, load_manifest, save_manifest, sha256_file, tool_version
from .onnx_export import OPSET, export_sizes, export_stage
from .parity import OutputCheck, check_stage, failure_table
from .patches import export_patches
from .sources import SOURCES, ReferenceModels, run_reference

log = logging.getLogger(__name__)

# checkpoint files each reference model reads (names from CheckpointLayout.required_files)
MODEL_FILES = {
    "gpt": ("config", "gpt"), "w2v": ("config", "w2v_bert_config", "w2v_bert_weights", "w2v_stat"),
    "codec": ("config", "semantic_codec"), "campplus": ("config", "campplus"), "s2mel": ("config", "s2mel"),
    "bigvgan": ("config", "bigvgan_config", "bigvgan_weights"),
}
PRECISIONS = ("fp32", "fp16", "bf16")


class BuildError(RuntimeError):
    pass


@dataclass
class BuildReport:
    out: Path
    built: list[str] = field(default_factory=list)
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


def build(checkpoints: str | Path, out: str | Path, stages: list[str] | None = None, precision: str = "fp32",
          force: bool = False, points: tuple[str, ...] = ("opt", "min", "awkward", "max"),
          progress: bool = True) -> BuildReport:
    from tqdm import tqdm

    out = Path(out)
    if precision not in PRECISIONS:
        raise BuildError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    models = ReferenceModels(checkpoints)
    specs = stage_specs(models.cfg)
    chosen = list(stages) if stages else list(STAGE_ORDER)
    unknown = [s for s in chosen if s not in specs]
    if unknown:
        raise BuildError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(STAGE_ORDER)}")
    _check_out_dir(out)
    manifest = load_manifest(out, create=True)
    files = models.layout.required_files(models.cfg)
    file_hashes: dict[str, str] = {}

    def hashes_for(model: str) -> dict[str, str]:
        for k in MODEL_FILES[model]:
            if k not in file_hashes:
                file_hashes[k] = sha256_file(files[k])
        return {k: file_hashes[k] for k in MODEL_FILES[model]}

    manifest["checkpoints"]["path"] = str(Path(checkpoints).resolve())
    rep = BuildReport(out=out)
    versions = {k: v for k, v in library_versions().items() if k != "python"}
    code = code_fingerprint()
    bar = tqdm(chosen, desc="tts-export build", unit="stage", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        spec, src = specs[name], SOURCES[name]
        key = cache_key({"spec": spec.spec_hash(), "precision": precision, "opset": OPSET, "tool": tool_version(),
                         "code": code,
                         "versions": versions, "files": hashes_for(src.model)})
        entry = manifest["stages"].get(name)
        if not force and entry and entry.get("cache_key") == key and entry.get("parity", {}).get("passed") and \
                all((out / f).is_file() and sha256_file(out / f) == h for f, h in entry["files"].items()):
            rep.skipped.append(name)
            release_unneeded(models, chosen, name)
            continue
        t0 = time.perf_counter()
        module = src.adapter(models.get(src.model)).eval()
        feed = src.sampler(spec, export_sizes(spec), np.random.default_rng(0))
        with tempfile.TemporaryDirectory(prefix=f".build-{name}-", dir=out) as tmp:
            onnx_path = Path(tmp) / f"{name}.onnx"
            meta = {"indextts_trt.stage": name, "indextts_trt.spec_hash": spec.spec_hash(),
                    "indextts_trt.cache_key": key, "indextts_trt.version": tool_version(),
                    "indextts_trt.precision": precision, "indextts_trt.inputs": ",".join(t.name for t in spec.inputs),
                    "indextts_trt.outputs": ",".join(t.name for t in spec.outputs)}
            try:
                with export_patches(name):
                    export_stage(module, spec, feed, onnx_path, meta)
                sess = _ort_session(onnx_path)
            except Exception as e:  # an exporter/ORT failure fails this stage, named, like a parity failure
                raise BuildError(f"stage {name}: export failed: {type(e).__name__}: {e}") from e
            checks = check_stage(spec, lambda f: run_reference(module, spec, f),
                                 lambda f: dict(zip([o.name for o in spec.outputs], sess.run(None, f))),
                                 src.sampler, precision="fp32", points=points)
            del sess
            rep.checks.extend(checks)
            passed = all(c.passed for c in checks)
            rep.seconds[name] = time.perf_counter() - t0
            if not passed:
                rep.failed.append(name)
                release_unneeded(models, chosen, name)
                continue  # the temporary directory (and the bad graph) is removed here
            produced = sorted(p.name for p in Path(tmp).iterdir())
            for f in produced:
                os.replace(Path(tmp) / f, out / f)
        manifest["stages"][name] = {
            "description": spec.description, "files": {f: sha256_file(out / f) for f in produced},
            "onnx": f"{name}.onnx", "spec_hash": spec.spec_hash(), "cache_key": key, "opset": OPSET,
            "precision": precision, "engine": None,
            "dims": {d.name: {"min": d.min, "opt": d.opt, "max": d.max} for d in spec.dims},
            "derived": dict(spec.derived),
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in spec.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in spec.outputs],
            "checkpoint_files": hashes_for(src.model), "export_seconds": round(rep.seconds[name], 2),
            "parity": {"passed": True, "precision": "fp32", "checks": [c.to_json() for c in checks]},
        }
        save_manifest(out, manifest)
        rep.built.append(name)
        release_unneeded(models, chosen, name)
    manifest["checkpoints"]["files"] = dict(file_hashes)
    manifest["host_files"] = write_host_data(models, out)
    save_manifest(out, manifest)
    _write_report(out, manifest, rep)
    return rep


def release_unneeded(models: ReferenceModels, chosen: list[str], done: str) -> None:
    """Free a reference model once no later stage of this build reads it (full size: GB each)."""
    import gc

    later = chosen[chosen.index(done) + 1:]
    model = SOURCES[done].model
    if model != "gpt" and all(SOURCES[s].model != model for s in later):  # gpt: host data needs it last
        models.release(model)
        gc.collect()


def write_host_data(models: ReferenceModels, out: Path) -> dict[str, str]:
    """What the torch-free runtime needs besides the graphs: config.yaml, bpe.model, and in a
    safetensors file the speed-embedding rows and the emotion preset matrices (released as torch
    pickles, which the runtime cannot read without torch)."""
    import shutil

    import torch
    from safetensors.numpy import save_file

    from indextts_trt.reference.unified_voice import load_emo_matrices

    lay, cfg = models.layout, models.cfg
    for src in (lay.config(), lay.bpe_model()):
        tmp = out / f".{src.name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, out / src.name)
    spk, emo = load_emo_matrices(lay.spk_matrix(cfg), lay.emo_matrix(cfg), cfg)
    speed = models.get("gpt").speed_emb.weight.detach()
    tensors = {"speed_rows": speed[[1, 0]].numpy().astype(np.float32),  # [speed_emb[1], speed_emb[0]]
               "spk_matrix": torch.cat(spk).numpy().astype(np.float32),
               "emo_matrix": torch.cat(emo).numpy().astype(np.float32)}
    tmp = out / ".host_data.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, out / "host_data.safetensors")
    return {name: sha256_file(out / name) for name in ("config.yaml", "bpe.model", "host_data.safetensors")}


def _write_report(out: Path, manifest: dict, rep: BuildReport) -> None:
    """Markdown table of every stage's parity checks (this run's failures included)."""
    rows = [c for st in manifest["stages"].values() for c in st["parity"]["checks"]]
    rows += [c.to_json() for c in rep.checks if c.stage in rep.failed]
    lines = ["# Parity report (ONNX Runtime CPU vs PyTorch reference, fp32)", "",
             "| stage | point | sizes | output | stat | max abs err | measure | limit | ok |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in rows:
        lines.append(f"| {c['stage']} | {c['point']} | {c['sizes']} | {c['output']} | {c['stat']} | "
                     f"{c['max_abs_err']:.3g} | {c['measure']:.3g} | {c['limit']} | {'yes' if c['passed'] else '**NO**'} |")
    (out / "parity_report.md").write_text("\n".join(lines) + "\n")


__all__ = ["build", "BuildReport", "BuildError", "failure_table"]
