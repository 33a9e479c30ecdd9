"""IndexTTS-2's reference models by name: the checkpoint files each reads and how it is loaded.

One table, used by the reference pipeline and by the exporter (``export/indextts2``), so a model's
files and loader are named once. File names are those of ``CheckpointLayout.required_files``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelSource:
    files: tuple[str, ...]  # names in the layout's required_files
    load: Callable[[object, object], nn.Module]  # (layout, cfg) -> the model, eval mode


def _gpt(lay, cfg):
    from .unified_voice import load_unified_voice

    return load_unified_voice(lay.gpt(cfg), cfg)


def _w2v(lay, cfg):
    from .w2vbert import load_w2vbert

    return load_w2vbert(lay.w2v_bert_dir(), lay.w2v_stat(cfg), cfg)


def _codec(lay, cfg):
    from .semantic_codec import load_semantic_codec

    return load_semantic_codec(lay.semantic_codec(), cfg)


def _campplus(lay, cfg):
    from .campplus import load_campplus

    return load_campplus(lay.campplus(), cfg)


def _s2mel(lay, cfg):
    from .s2mel import load_s2mel

    return load_s2mel(lay.s2mel(cfg), cfg)


def _bigvgan(lay, cfg):
    from .bigvgan import load_bigvgan

    return load_bigvgan(lay.bigvgan_dir(), cfg)


MODELS: dict[str, ModelSource] = {
    "gpt": ModelSource(("config", "gpt"), _gpt),
    "w2v": ModelSource(("config", "w2v_bert_config", "w2v_bert_weights", "w2v_stat"), _w2v),
    "codec": ModelSource(("config", "semantic_codec"), _codec),
    "campplus": ModelSource(("config", "campplus"), _campplus),
    "s2mel": ModelSource(("config", "s2mel"), _s2mel),
    "bigvgan": ModelSource(("config", "bigvgan_config", "bigvgan_weights"), _bigvgan),
}

__all__ = ["ModelSource", "MODELS"]
