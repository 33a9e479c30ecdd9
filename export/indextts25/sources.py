"""IndexTTS-2.5's stage sources: IndexTTS-2's for the stages the two share (adapter, parity
sampler, patch: the semantic encoder's float clamp, the decode step's cache-length sampler), 2.5's
adapters for the rest. Model names are those of reference/v25/loaders.py."""

from __future__ import annotations

from indextts_trt.reference.v25.loaders import MODELS

from ..indextts2.sources import SOURCES as SOURCES_V2
from ..variant import StageSource
from . import adapters as A

SHARED = ("semantic_encoder", "campplus", "emotion_conditioning", "gpt_decode", "length_regulator", "dit_step",
          "bigvgan")

SOURCES: dict[str, StageSource] = {
    **{name: SOURCES_V2[name] for name in SHARED},
    "speaker_projection": StageSource("gpt", A.SpeakerProjection),
    "gpt_prefill": StageSource("gpt", A.GptPrefill),
    "codec_decode": StageSource("codec", A.CodecDecode),
}

__all__ = ["MODELS", "SOURCES", "SHARED"]
