"""IndexTTS-2.5's reference models by name: IndexTTS-2's table (reference/loaders.py) with the
three models 2.5 changes. File names are those of ``CheckpointLayoutV25.required_files``; the
w2v-bert, CAMPPlus and BigVGAN entries are 2.0's (same files, same loaders)."""

from __future__ import annotations

from ..loaders import MODELS as MODELS_V2, ModelSource


def _gpt(lay, cfg):
    from .unified_voice import load_unified_voice_v25

    return load_unified_voice_v25(lay.gpt(cfg), cfg)


def _codec(lay, cfg):
    from .codec import load_codec

    return load_codec(lay.codec(), cfg)


def _s2mel(lay, cfg):
    from .s2mel import load_s2mel_v25

    return load_s2mel_v25(lay.s2mel(cfg), cfg)


MODELS: dict[str, ModelSource] = {
    **MODELS_V2,
    "gpt": ModelSource(("config", "gpt"), _gpt),
    "codec": ModelSource(("config", "codec"), _codec),
    "s2mel": ModelSource(("config", "s2mel"), _s2mel),
}

__all__ = ["MODELS"]
