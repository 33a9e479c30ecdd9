"""IndexTTS-2.5's semantic codec: ``indextts/codec/models.EnhancedCodec`` in ``codec.pth``.

It is 2.0's MaskGCT RepCodec (same Vocos encoder/decoder, same factorized VQ: weight-normed 1×1
``in_project`` to ``codebook_dim``, nearest codebook row by cosine — L2-normalized latents and
codebook, computed as upstream's squared distance —, the *raw* row through ``out_project``)
with a 2× time resampler around it (``downsample_scale=2``, the constructor default):
- quantize: ``down`` Conv1d(k3, s2, p1) → exact GELU → encoder → VQ: 50 Hz features → 25 Hz codes
  (``ceil(T/2)``; only ``forward``, a training path, first drops an odd last frame);
- decode: codes → ``vq2emb`` → decoder → nearest ×2 upsample → ``up`` Conv1d(k3, s1, p1):
  N codes → 2N frames at 50 Hz (B, 2N, hidden).
Inference uses only ``decode`` (the 2.5 prompt path regulates raw w2v-bert features, and the
GPT never sees codec codes of the prompt). ``codec.pth`` is ``{"model": state_dict, ...}`` (the
release also carries optimizer state) with old-style ``weight_g``/``weight_v`` weight norm.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indextts_trt.runtime.indextts25.config import CODEC_UPSAMPLE, IndexTTS25Config

from ..checkpoint_io import (
    expect_mapping,
    fold_weight_norm_keys,
    load_pickled,
    load_strict,
    strip_prefix,
    torch_save,
    unfold_weight_norm_keys,
)
from ..semantic_codec import WN_LAYERS, ResidualVQ, VocosBackbone


class EnhancedCodec(nn.Module):
    def __init__(self, cfg: IndexTTS25Config):
        super().__init__()
        c = cfg.semantic_codec
        h = c.hidden_size
        self.down = nn.Conv1d(h, h, kernel_size=3, stride=2, padding=1)
        self.up = nn.Conv1d(h, h, kernel_size=3, stride=1, padding=1)
        self.encoder = nn.Sequential(VocosBackbone(h, c.vocos_dim, c.vocos_intermediate_dim, c.vocos_num_layers),
                                     nn.Linear(c.vocos_dim, h))
        self.decoder = nn.Sequential(VocosBackbone(h, c.vocos_dim, c.vocos_intermediate_dim, c.vocos_num_layers),
                                     nn.Linear(c.vocos_dim, h))
        self.quantizer = ResidualVQ(h, c.codebook_size, c.codebook_dim)
        for m in (self.down, self.up):  # upstream's reset_parameters: trunc_normal(0.02), zero bias
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def vq(self):
        return self.quantizer.quantizers[0]

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, hidden) 50 Hz → (codes (B, ceil(T/2)) int64, quantized (B, ceil(T/2), hidden))."""
        z = F.gelu(self.down(x.transpose(1, 2)))  # (B, hidden, T')
        z = self.encoder(z).transpose(1, 2)  # VocosBackbone → (B, T', vocos) → Linear → transpose
        codes = self.vq.indices(z)
        return codes, self.vq.embed(codes).transpose(1, 2)

    def decode(self, codes: Tensor) -> Tensor:
        """codes (B, N) int64 → (B, 2N, hidden) 50 Hz features (upstream ``EnhancedCodec.decode``)."""
        x = self.decoder(self.vq.embed(codes))  # (B, N, hidden)
        x = F.interpolate(x.transpose(1, 2), scale_factor=CODEC_UPSAMPLE, mode="nearest")
        return self.up(x).transpose(1, 2)


def build_codec(cfg: IndexTTS25Config) -> EnhancedCodec:
    return EnhancedCodec(cfg).eval()


def write_codec(model: EnhancedCodec, path: str | Path) -> None:
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    torch_save({"model": unfold_weight_norm_keys(sd, WN_LAYERS)}, path)


def write_random_codec(cfg: IndexTTS25Config, path: str | Path, seed: int) -> None:
    torch.manual_seed(seed)
    write_codec(build_codec(cfg), path)


def load_codec(path: str | Path, cfg: IndexTTS25Config) -> EnhancedCodec:
    """Strict on ``["model"]`` (upstream keeps random init for missing/mis-shaped keys, with a
    warning); other top-level entries (optimizer state) are ignored as upstream ignores them."""
    obj, path = load_pickled(path, "codec checkpoint (codec.pth)")  # or its safetensors twin
    sd = expect_mapping(obj, path, "model")
    sd = fold_weight_norm_keys(strip_prefix(sd))
    model = EnhancedCodec(cfg)
    load_strict(model, sd, f"{path} ['model']")
    return model.eval()
