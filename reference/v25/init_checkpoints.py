"""Write a complete random-weight IndexTTS-2.5 checkpoint directory in the released layout.

Files, containers, key names and dtypes are the release's (docs/indextts-2.5.md §2): the 2.5
files (config.yaml, the tiktoken ranks, gpt.pth, codec.pth) are new writers; s2mel.pth, feat1/2.pt,
w2v-bert, CAMPPlus and BigVGAN are 2.0's writers, since 2.5 ships the same formats and key names
for them. Not written: ``bpe.model`` and ``qwen0.6bemo4-merge/`` (in the release repository,
never read by 2.5 inference except QwenEmotion for emotion-from-text).

``tiny`` takes seconds; ``full`` is the released size (~1.3 B random parameters, several GB).
"""

from __future__ import annotations

from pathlib import Path

from indextts_trt.runtime.indextts25.config import IndexTTS25Config, config_v25_for_size
from indextts_trt.runtime.indextts25.layout import CheckpointLayoutV25

from ..init_checkpoints import STEPS, InitReport, WriteStep, write_checkpoint_dir


def _tokenizer(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    from indextts_trt.runtime.text.tiktoken_train import write_tiktoken_file

    write_tiktoken_file(lay.tokenizer(), cfg.mergeable_ranks, seed)


def _gpt(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    from ..unified_voice import write_random_emo_matrices
    from .unified_voice import write_random_unified_voice_v25

    write_random_unified_voice_v25(cfg, lay.gpt(cfg), seed)
    write_random_emo_matrices(cfg, lay.root, seed + 1)


def _codec(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    from .codec import write_random_codec

    write_random_codec(cfg, lay.codec(), seed + 5)


_SHARED = {step.name: step for step in STEPS}  # 2.0's writers, same seeds: same formats in 2.5
STEPS_V25: tuple[WriteStep, ...] = (
    _SHARED["config.yaml"],
    WriteStep("multilingual tiktoken", _tokenizer),
    WriteStep("gpt.pth + feat1/feat2.pt", _gpt),
    WriteStep("codec.pth", _codec),
    *(_SHARED[name] for name in ("s2mel.pth", "w2v-bert-2.0 + stats", "campplus", "bigvgan")),
)


def init_checkpoints_v25(size: str, out: str | Path, *, seed: int = 0, overwrite: bool = False,
                         progress: bool = True) -> InitReport:
    """Write random-weight IndexTTS-2.5 checkpoints of ``size`` ('tiny' or 'full') into ``out``
    (for ``tts-export init-checkpoints --variant indextts-2.5``)."""
    return write_checkpoint_dir(config_v25_for_size(size), CheckpointLayoutV25, STEPS_V25, size, out, seed=seed,
                                overwrite=overwrite, progress=progress)
