"""IndexTTS-2's stage sources: which reference model each stage wraps (models and their loaders:
``reference/loaders.py``), its export adapter, and how its parity inputs are drawn.

The samplers respect each stage's semantics (valid code ids, a sorted nearest-index map, x_lens
within T, a cache length inside the capacity, a padded w2v frame); plain float inputs are standard
normal (``generic_inputs``).
"""

from __future__ import annotations

import numpy as np

from indextts_trt.reference.loaders import MODELS
from indextts_trt.runtime.numerics import nearest_index
from indextts_trt.runtime.spec import StageSpec

from ..variant import StageSource, generic_inputs
from . import adapters as A
from .patches import relative_key_float_clamp


def _lr_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    x = generic_inputs(spec, sizes, rng)
    x["src_index"] = nearest_index(sizes["T_in"], sizes["T_out"])
    return x


def _w2v_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    x = generic_inputs(spec, sizes, rng)
    x["attention_mask"][0, -1] = int(rng.integers(0, 2))  # an odd fbank count pads the last frame
    return x


def _dit_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    x = generic_inputs(spec, sizes, rng)
    B, T = sizes["B"], sizes["T"]
    x["x_lens"] = np.full(B, T, np.int64)
    x["x_lens"][-1] = int(rng.integers(max(1, T // 2), T + 1))  # a padded row when B > 1 (batched requests)
    x["prompt_len"] = np.array([int(rng.integers(0, n)) for n in x["x_lens"]], np.int64)
    x["t"] = rng.random(B).astype(np.float32)
    x["dt"] = rng.uniform(0.02, 1.0, B).astype(np.float32)
    x["cfg_rate"] = np.array([0.7], np.float32)
    return x


def _decode_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    x = generic_inputs(spec, sizes, rng)
    x["cache_len"] = rng.integers(1, sizes["CAP"], size=sizes["B"]).astype(np.int64)  # each row its own length
    for name in spec.cache.inputs:
        x[name] *= 0.5
    return x


SOURCES: dict[str, StageSource] = {
    "semantic_encoder": StageSource("w2v", A.SemanticEncoder, _w2v_inputs, patch=relative_key_float_clamp),
    "semantic_codec": StageSource("codec", A.SemanticCodec),
    "vq2emb": StageSource("codec", A.Vq2Emb),
    "campplus": StageSource("campplus", A.Campplus),
    "speaker_conditioning": StageSource("gpt", A.SpeakerConditioning),
    "emotion_conditioning": StageSource("gpt", A.EmotionConditioning),
    "gpt_prefill": StageSource("gpt", A.GptPrefill),
    "gpt_decode": StageSource("gpt", A.GptDecode, _decode_inputs),
    "gpt_layer": StageSource("s2mel", A.GptLayer),
    "length_regulator": StageSource("s2mel", A.LengthRegulator, _lr_inputs),
    "dit_step": StageSource("s2mel", A.DitStep, _dit_inputs),
    "bigvgan": StageSource("bigvgan", A.Vocoder),
}

__all__ = ["MODELS", "SOURCES"]
