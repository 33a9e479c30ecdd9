"""Write a complete random-weight checkpoint directory in the released IndexTTS-2 layout.

The files, containers, key names, tensor layouts and dtypes are those of the released
checkpoints (ARCHITECTURE.md §1.2), so every loader is exercised exactly as it will be on the real
files. ``tiny`` uses the odd small test configuration and takes seconds; ``full`` uses the released
configuration (about 1.6 B random parameters, several GB on disk).

The directory is written to a temporary sibling and renamed at the end: a failure or Ctrl-C
leaves nothing half-written.
"""

from __future__ import annotations

import gc
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indextts_trt.runtime.indextts2.config import IndexTTSConfig, config_for_size, dump_config
from indextts_trt.runtime.indextts2.layout import CheckpointLayout

from indextts_trt.runtime.files import atomic_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteStep:
    name: str
    write: Callable[[IndexTTSConfig, CheckpointLayout, str, int], None]


def _config(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    # The released file has no optional fields; the tiny one needs them to shrink hard-coded sizes.
    dump_config(cfg, lay.config(), include_optional=(size != "full"))


def _bpe(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    from indextts_trt.runtime.text.bpe_train import train_bpe_model

    train_bpe_model(lay.bpe_model(), vocab_size=cfg.gpt.number_text_tokens, seed=seed)


def _gpt(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    from .unified_voice import write_random_emo_matrices, write_random_unified_voice

    write_random_unified_voice(cfg, lay.gpt(cfg), seed)
    write_random_emo_matrices(cfg, lay.root, seed + 1)


def _s2mel(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    from .s2mel import write_random_s2mel

    write_random_s2mel(cfg, lay.s2mel(cfg), seed + 2)


def _w2v(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    from .w2vbert import write_random_w2v_stats, write_random_w2vbert

    write_random_w2vbert(cfg, lay.w2v_bert_dir(), seed + 3, size)
    write_random_w2v_stats(cfg, lay.w2v_stat(cfg), seed + 4)


def _codec(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    from .semantic_codec import write_random_semantic_codec

    write_random_semantic_codec(cfg, lay.semantic_codec(), seed + 5)


def _campplus(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    from .campplus import write_random_campplus

    write_random_campplus(cfg, lay.campplus(), seed + 6)


def _bigvgan(cfg: IndexTTSConfig, lay: CheckpointLayout, size: str, seed: int) -> None:
    from .bigvgan import write_random_bigvgan

    write_random_bigvgan(cfg, lay.bigvgan_dir(), seed + 7, size)


STEPS: tuple[WriteStep, ...] = (
    WriteStep("config.yaml", _config),
    WriteStep("bpe.model", _bpe),
    WriteStep("gpt.pth + feat1/feat2.pt", _gpt),
    WriteStep("s2mel.pth", _s2mel),
    WriteStep("w2v-bert-2.0 + stats", _w2v),
    WriteStep("semantic codec", _codec),
    WriteStep("campplus", _campplus),
    WriteStep("bigvgan", _bigvgan),
)


@dataclass(frozen=True)
class InitReport:
    out: Path
    seconds: dict[str, float]
    peak_rss_mb: float
    total_bytes: int


def init_checkpoints(size: str, out: str | Path, *, seed: int = 0, overwrite: bool = False,
                     progress: bool = True) -> InitReport:
    """Write random-weight checkpoints of ``size`` ('tiny' or 'full') into ``out``."""
    return write_checkpoint_dir(config_for_size(size), CheckpointLayout, STEPS, size, out, seed=seed,
                                overwrite=overwrite, progress=progress)


def write_checkpoint_dir(cfg, layout_cls, steps: tuple[WriteStep, ...], size: str, out: str | Path, *,
                         seed: int = 0, overwrite: bool = False, progress: bool = True) -> InitReport:
    """Run ``steps`` into a temporary sibling of ``out``, check the layout, rename into place.
    Shared by the model variants: ``layout_cls(root)`` needs ``hf_cache`` and ``check()``."""
    import torch
    from tqdm import tqdm

    out = Path(out)
    seconds: dict[str, float] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        lay = layout_cls(tmp)
        lay.hf_cache.mkdir(parents=True, exist_ok=True)
        bar = tqdm(steps, desc=f"init-checkpoints ({size})", unit="file", disable=not progress)
        for step in bar:
            bar.set_postfix_str(step.name)
            t0 = time.perf_counter()
            with torch.no_grad():
                step.write(cfg, lay, size, seed)
            gc.collect()  # full-size modules are built one at a time; free each before the next
            seconds[step.name] = time.perf_counter() - t0
        # a last check that every file the loaders need is there (and the config re-loads)
        lay.check()
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return InitReport(out=out, seconds=seconds, peak_rss_mb=peak, total_bytes=total)
