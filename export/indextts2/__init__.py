"""The export half of IndexTTS-2: reference models, stage sources, host files, random checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indextts_trt.runtime.indextts2 import VARIANT

from ..variant import ExportVariant, emotion_host_tensors, write_host_bundle
from .sources import MODELS, SOURCES

_HERE = Path(__file__).resolve().parent
_REFERENCE = _HERE.parent.parent / "reference"


def write_host_files(models, out: Path) -> dict[str, str]:
    """What the torch-free runtime needs besides the graphs: config.yaml, bpe.model, and in a
    safetensors file the speed-embedding rows and the emotion preset matrices (released as torch
    pickles, which the runtime cannot read without torch)."""
    speed = models.get("gpt").speed_emb.weight.detach()
    tensors = {"speed_rows": speed[[1, 0]].numpy().astype(np.float32),  # [speed_emb[1], speed_emb[0]]
               **emotion_host_tensors(models)}
    return write_host_bundle(models, out, (models.layout.config(), models.layout.bpe_model()), tensors)


def init_checkpoints(size: str, out, *, seed: int = 0, overwrite: bool = False, progress: bool = True):
    from indextts_trt.reference.init_checkpoints import init_checkpoints as write

    return write(size, out, seed=seed, overwrite=overwrite, progress=progress)


EXPORT = ExportVariant(
    runtime=VARIANT, models=MODELS, sources=SOURCES, write_host_files=write_host_files,
    init_checkpoints=init_checkpoints, host_models=("gpt",),
    # what shapes IndexTTS-2's graphs: the reference models, their config, the adapters, samplers
    # and export patches (the CLIs, the runtime's sequencing and the TensorRT plan do not, and
    # editing them must not invalidate an 8-minute full-size build). The stage specs are in the
    # cache key through ``spec.graph_key()`` (names, dtypes, shapes, ranges) and their tolerances
    # through the check key, so a new tolerance re-judges the graphs instead of re-exporting them.
    code_files=(*sorted(f for f in _REFERENCE.glob("*.py") if f.name not in ("pipeline.py", "init_checkpoints.py")),
                *sorted(_HERE.glob("*.py")), _HERE.parent.parent / "runtime" / "indextts2" / "config.py"),
)

__all__ = ["EXPORT", "write_host_files"]
