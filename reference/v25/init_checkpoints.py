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

from indextts_trt.runtime.indextts25.config import IndexTTS25Config, config_v25_for_size, dump_config_v25
from indextts_trt.runtime.indextts25.layout import CheckpointLayoutV25

from ..init_checkpoints import InitReport, WriteStep, write_checkpoint_dir


def _config(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    dump_config_v25(cfg, lay.config(), include_optional=(size != "full"))


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


def _s2mel(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    from .s2mel import write_random_s2mel_v25

    write_random_s2mel_v25(cfg, lay.s2mel(cfg), seed + 2)


def _w2v(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    from ..w2vbert import write_random_w2v_stats, write_random_w2vbert

    write_random_w2vbert(cfg, lay.w2v_bert_dir(), seed + 3, size)
    write_random_w2v_stats(cfg, lay.w2v_stat(cfg), seed + 4)


def _campplus(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    from ..campplus import write_random_campplus

    write_random_campplus(cfg, lay.campplus(), seed + 6)


def _bigvgan(cfg: IndexTTS25Config, lay: CheckpointLayoutV25, size: str, seed: int) -> None:
    from ..bigvgan import write_random_bigvgan

    write_random_bigvgan(cfg, lay.bigvgan_dir(), seed + 7, size)


STEPS_V25: tuple[WriteStep, ...] = (
    WriteStep("config.yaml", _config),
    WriteStep("multilingual tiktoken", _tokenizer),
    WriteStep("gpt.pth + feat1/feat2.pt", _gpt),
    WriteStep("codec.pth", _codec),
    WriteStep("s2mel.pth", _s2mel),
    WriteStep("w2v-bert-2.0 + stats", _w2v),
    WriteStep("campplus", _campplus),
    WriteStep("bigvgan", _bigvgan),
)


def init_checkpoints_v25(size: str, out: str | Path, *, seed: int = 0, overwrite: bool = False,
                         progress: bool = True) -> InitReport:
    """Write random-weight IndexTTS-2.5 checkpoints of ``size`` ('tiny' or 'full') into ``out``
    (for ``tts-export init-checkpoints --variant indextts-2.5``)."""
    return write_checkpoint_dir(config_v25_for_size(size), CheckpointLayoutV25, STEPS_V25, size, out, seed=seed,
                                overwrite=overwrite, progress=progress)
