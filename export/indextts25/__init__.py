"""The export half of IndexTTS-2.5: reference models, stage sources, host files, random checkpoints."""

from __future__ import annotations

from pathlib import Path

from indextts_trt.runtime.indextts25 import VARIANT

from ..variant import ExportVariant, emotion_host_tensors, write_host_bundle
from .sources import MODELS, SOURCES

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent.parent


def write_host_files(models, out: Path) -> dict[str, str]:
    """config.yaml, the tiktoken ranks, and the emotion preset matrices as float32 tensors."""
    return write_host_bundle(models, out, (models.layout.config(), models.layout.tokenizer()),
                             emotion_host_tensors(models))


def init_checkpoints(size: str, out, *, seed: int = 0, overwrite: bool = False, progress: bool = True):
    from indextts_trt.reference.v25.init_checkpoints import init_checkpoints_v25

    return init_checkpoints_v25(size, out, seed=seed, overwrite=overwrite, progress=progress)


def _code(folder: Path) -> list[Path]:
    return sorted(f for f in folder.glob("*.py") if f.name not in ("pipeline.py", "init_checkpoints.py"))


EXPORT = ExportVariant(
    runtime=VARIANT, models=MODELS, sources=SOURCES, write_host_files=write_host_files,
    init_checkpoints=init_checkpoints,
    # what shapes 2.5's graphs: IndexTTS-2's reference modules and export code (shared stages), 2.5's
    # reference modules, adapters and configs; not the pipelines or the writers (the stage specs:
    # through spec.graph_key() and the check key, as for IndexTTS-2)
    code_files=(*_code(_ROOT / "reference"), *_code(_ROOT / "reference" / "v25"), *sorted((_HERE.parent / "indextts2").glob("*.py")),
                *sorted(_HERE.glob("*.py")),
                *(_ROOT / "runtime" / v / "config.py" for v in ("indextts2", "indextts25"))),
)

__all__ = ["EXPORT", "write_host_files"]
