"""Where each stage's PyTorch reference comes from, and how its parity inputs are drawn.

``StageSource`` pairs a stage name with the adapter over the loaded reference models and an input
sampler that respects the stage's semantics (valid code ids, a sorted nearest-index map, x_lens
within T, a cache length inside the capacity); plain float inputs are standard normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from indextts_trt.runtime.config import IndexTTSConfig
from indextts_trt.runtime.layout import CheckpointLayout
from indextts_trt.runtime.spec import StageSpec

from . import adapters as A


class ReferenceModels:
    """Loads each reference model of a checkpoint directory on first use."""

    def __init__(self, checkpoints: str | Path):
        self.layout = CheckpointLayout(Path(checkpoints))
        self.cfg: IndexTTSConfig = self.layout.check()
        self._cache: dict[str, nn.Module] = {}

    def get(self, name: str) -> nn.Module:
        if name not in self._cache:
            lay, cfg = self.layout, self.cfg
            if name == "gpt":
                from indextts_trt.reference.unified_voice import load_unified_voice as f

                self._cache[name] = f(lay.gpt(cfg), cfg)
            elif name == "w2v":
                from indextts_trt.reference.w2vbert import load_w2vbert

                self._cache[name] = load_w2vbert(lay.w2v_bert_dir(), lay.w2v_stat(cfg), cfg)
            elif name == "codec":
                from indextts_trt.reference.semantic_codec import load_semantic_codec

                self._cache[name] = load_semantic_codec(lay.semantic_codec(), cfg)
            elif name == "campplus":
                from indextts_trt.reference.campplus import load_campplus

                self._cache[name] = load_campplus(lay.campplus(), cfg)
            elif name == "s2mel":
                from indextts_trt.reference.s2mel import load_s2mel

                self._cache[name] = load_s2mel(lay.s2mel(cfg), cfg)
            elif name == "bigvgan":
                from indextts_trt.reference.bigvgan import load_bigvgan

                self._cache[name] = load_bigvgan(lay.bigvgan_dir(), cfg)
            else:
                raise KeyError(name)
        return self._cache[name]

    def release(self, name: str) -> None:
        self._cache.pop(name, None)


Sampler = Callable[[StageSpec, dict, np.random.Generator], dict]


def generic_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for t in spec.inputs:
        shape = spec.shape(t, sizes)
        if t.dtype == "int64":
            out[t.name] = rng.integers(t.low, max(t.high, t.low + 1), size=shape).astype(np.int64)
        else:
            out[t.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def _lr_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    from indextts_trt.reference.length_regulator import nearest_indices

    x = generic_inputs(spec, sizes, rng)
    x["src_index"] = nearest_indices(sizes["T_in"], sizes["T_out"]).numpy().astype(np.int64)
    return x


def _w2v_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    x = generic_inputs(spec, sizes, rng)
    x["attention_mask"][0, -1] = int(rng.integers(0, 2))  # an odd fbank count pads the last frame
    return x


def _dit_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    x = generic_inputs(spec, sizes, rng)
    T = sizes["T"]
    x["x_lens"] = np.full(sizes["B2"], T, np.int64)
    x["x_lens"][-1] = int(rng.integers(max(1, T // 2), T + 1))  # a padded row too
    x["t"] = rng.random(sizes["B2"]).astype(np.float32)
    return x


def _decode_inputs(spec: StageSpec, sizes: dict, rng: np.random.Generator) -> dict:
    x = generic_inputs(spec, sizes, rng)
    x["cache_len"] = np.array([int(rng.integers(1, sizes["CAP"]))], np.int64)
    x["kv"] *= 0.5
    return x


@dataclass(frozen=True)
class StageSource:
    model: str  # which reference model the adapter wraps
    adapter: Callable[[nn.Module], nn.Module]
    sampler: Sampler = generic_inputs


SOURCES: dict[str, StageSource] = {
    "semantic_encoder": StageSource("w2v", A.SemanticEncoder, _w2v_inputs),
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


def adapter_for(models: ReferenceModels, stage: str) -> nn.Module:
    src = SOURCES[stage]
    return src.adapter(models.get(src.model)).eval()


@torch.no_grad()
def run_reference(module: nn.Module, spec: StageSpec, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    outs = module(*[torch.from_numpy(np.ascontiguousarray(feed[t.name])) for t in spec.inputs])
    outs = outs if isinstance(outs, tuple) else (outs,)
    return {t.name: o.detach().cpu().numpy() for t, o in zip(spec.outputs, outs)}
