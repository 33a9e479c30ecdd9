"""The export half of a model variant: where each stage's PyTorch reference comes from.

``runtime/variant.py`` holds a family's torch-free half (config, layout, specs, pipeline); this is
the half that needs torch: which reference model each stage wraps and how it is loaded from the
checkpoint directory, the export adapter and the parity-input sampler of every stage, the files
and tensors the runtime needs besides the graphs, the random-weight checkpoint writer and the
source files whose code shapes the graphs. The generic build, parity gate and precision analysis
use only this and the runtime half.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from indextts_trt.reference.loaders import ModelSource
from indextts_trt.runtime.spec import StageSpec
from indextts_trt.runtime.variant import ModelVariant, VariantError, get_variant

Sampler = Callable[[StageSpec, dict, np.random.Generator], dict]


def generic_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal floats; integers uniform in the spec's [low, high)."""
    out = {}
    for t in spec.inputs:
        shape = spec.shape(t, sizes)
        if t.dtype == "int64":
            out[t.name] = rng.integers(t.low, max(t.high, t.low + 1), size=shape).astype(np.int64)
        else:
            out[t.name] = rng.standard_normal(shape).astype(np.float32)
    return out


@dataclass(frozen=True)
class StageSource:
    """A stage's reference: the model its adapter wraps, the adapter, the parity-input sampler,
    and an optional scoped export patch (a context manager factory; see each variant's patches)."""

    model: str
    adapter: Callable[[nn.Module], nn.Module]
    sampler: Sampler = generic_inputs
    patch: Callable[[], contextlib.AbstractContextManager] | None = None


@dataclass(frozen=True)
class ExportVariant:
    runtime: ModelVariant
    models: Mapping[str, ModelSource]
    sources: Mapping[str, StageSource]  # one per stage of the runtime half's specs
    # (models, out_dir) -> {file name: sha256} of what the runtime reads besides the graphs
    write_host_files: Callable[[object, Path], dict[str, str]]
    # (size, out, seed, overwrite, progress) -> report: random weights in the released formats
    init_checkpoints: Callable[..., object]
    # source files whose code shapes a graph (the reference models, adapters, samplers, patches)
    code_files: tuple[Path, ...] = ()
    # models the host-file writer reads: kept loaded until the end of a build
    host_models: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return self.runtime.name

    def code_fingerprint(self) -> str:
        from .manifest import files_fingerprint

        return files_fingerprint(self.code_files)


GLOSSARY = "glossary.yaml"  # optional user term readings, read from <model_dir>/ as upstream


def emotion_host_tensors(models) -> dict[str, np.ndarray]:
    """The emotion preset matrices (feat1.pt/feat2.pt, torch pickles upstream) as float32 arrays."""
    import torch

    from indextts_trt.reference.unified_voice import load_emo_matrices

    lay, cfg = models.layout, models.cfg
    spk, emo = load_emo_matrices(lay.spk_matrix(cfg), lay.emo_matrix(cfg), cfg)
    return {"spk_matrix": torch.cat(spk).numpy().astype(np.float32),
            "emo_matrix": torch.cat(emo).numpy().astype(np.float32)}


def write_host_bundle(models, out: Path, copies, tensors: dict[str, np.ndarray]) -> dict[str, str]:
    """The host files of a variant: ``copies`` (checkpoint files the runtime reads as they are, e.g.
    config.yaml and the tokenizer) and the optional glossary copied, ``tensors`` written as
    host_data.safetensors. Returns {file name: sha256} of the variant's host files (+ glossary)."""
    import shutil

    from safetensors.numpy import save

    from indextts_trt.runtime.files import atomic_write, sha256_file, write_bytes_atomic

    glossary = models.layout.root / GLOSSARY
    for src in (*copies, *([glossary] if glossary.is_file() else [])):
        atomic_write(out / src.name, lambda tmp, src=src: shutil.copyfile(src, tmp))
    if not glossary.is_file():
        (out / GLOSSARY).unlink(missing_ok=True)  # a glossary removed from the checkpoints goes here too
    # serialized in memory, written atomically: a full disk is then a WriteError naming the file
    write_bytes_atomic(out / "host_data.safetensors", save(tensors))
    names = (*models.variant.runtime.host_files, GLOSSARY)
    return {name: sha256_file(out / name) for name in names if (out / name).is_file()}


def run_reference(module: nn.Module, spec: StageSpec, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The adapter on a numpy feed (inputs in spec order), outputs by the spec's names."""
    import torch

    with torch.no_grad():
        outs = module(*[torch.from_numpy(np.ascontiguousarray(feed[t.name])) for t in spec.inputs])
    outs = outs if isinstance(outs, tuple) else (outs,)
    return {t.name: o.detach().cpu().numpy() for t, o in zip(spec.outputs, outs)}


class ReferenceModels:
    """Loads each reference model of a checkpoint directory on first use, through its variant."""

    def __init__(self, checkpoints: str | Path, variant: ExportVariant | None = None):
        from indextts_trt.runtime.config import read_yaml
        from indextts_trt.runtime.variant import detect_variant

        root = Path(checkpoints)
        if variant is None:
            if not root.is_dir():
                from indextts_trt.runtime.config import ConfigError

                raise ConfigError(f"checkpoint directory not found: {root}")
            variant = export_variant(detect_variant(read_yaml(root), str(root / "config.yaml")).name)
        self.variant = variant
        self.layout = variant.runtime.layout(root)
        self.cfg = self.layout.check()
        self._cache: dict[str, nn.Module] = {}

    def get(self, name: str) -> nn.Module:
        if name not in self._cache:
            self._cache[name] = self.variant.models[name].load(self.layout, self.cfg)
        return self._cache[name]

    def adapter(self, stage: str) -> nn.Module:
        src = self.variant.sources[stage]
        return src.adapter(self.get(src.model)).eval()

    def files(self, model: str) -> dict[str, Path]:
        req = self.layout.required_files(self.cfg)
        return {k: req[k] for k in self.variant.models[model].files}

    def release(self, name: str) -> None:
        self._cache.pop(name, None)


# Built-in export halves, imported on first use (each imports torch and the reference models).
_BUILTIN = {"indextts-2": "indextts_trt.export.indextts2:EXPORT", "indextts-2.5": "indextts_trt.export.indextts25:EXPORT"}
_REGISTRY: dict[str, ExportVariant] = {}


def register_export_variant(variant: ExportVariant) -> ExportVariant:
    _REGISTRY[variant.name] = variant
    return variant


def unregister_export_variant(name: str) -> None:
    _REGISTRY.pop(name, None)


def export_variant(name: str) -> ExportVariant:
    if name not in _REGISTRY and name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    if name not in _REGISTRY:
        get_variant(name)  # an unknown name raises with the known ones
        raise VariantError(f"model variant {name!r} has no export support registered")
    return _REGISTRY[name]


__all__ = ["ExportVariant", "ModelSource", "StageSource", "ReferenceModels", "Sampler", "generic_inputs", "run_reference",
           "write_host_bundle", "emotion_host_tensors", "GLOSSARY",
           "export_variant", "register_export_variant", "unregister_export_variant"]
