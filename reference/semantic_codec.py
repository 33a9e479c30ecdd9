"""MaskGCT semantic codec (RepCodec) as IndexTTS-2 uses it (ARCHITECTURE.md §6.2).

encoder = [VocosBackbone (ConvNeXt), Linear(vocos_dim → hidden)], then one factorized VQ:
weight-normed 1×1 in_project → codebook lookup by cosine (L2-normalized latents and codebook,
computed as upstream's squared distance) → the *raw* codebook row → weight-normed out_project.
The decoder is unused at inference but present: the released safetensors load is strict.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig

from .checkpoint_io import fold_weight_norm_keys, load_strict, safetensors_load, safetensors_save, unfold_weight_norm_keys

WN_LAYERS = ("quantizer.quantizers.0.in_project", "quantizer.quantizers.0.out_project")


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, inter: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, inter)
        self.pwconv2 = nn.Linear(inter, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T)
        y = self.norm(self.dwconv(x).transpose(1, 2))
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.transpose(1, 2)


class VocosBackbone(nn.Module):
    def __init__(self, channels: int, dim: int, inter: int, layers: int):
        super().__init__()
        self.embed = nn.Conv1d(channels, dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(ConvNeXtBlock(dim, inter, 1.0 / layers) for _ in range(layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) → (B, T, dim)."""
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for blk in self.convnext:
            x = blk(x)
        return self.final_layer_norm(x.transpose(1, 2))


class FactorizedVQ(nn.Module):
    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_project = nn.Conv1d(dim, codebook_dim, 1)
        self.out_project = nn.Conv1d(codebook_dim, dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def indices(self, z: Tensor) -> Tensor:
        """z (B, dim, T) → (B, T) nearest codebook rows by cosine, as upstream computes it."""
        e = self.in_project(z).transpose(1, 2)  # (B, T, cd)
        e = F.normalize(e, dim=-1)
        cb = F.normalize(self.codebook.weight, dim=-1)
        dist = e.pow(2).sum(-1, keepdim=True) - 2 * e @ cb.t() + cb.pow(2).sum(-1)[None, None]
        return (-dist).argmax(-1)

    def embed(self, codes: Tensor) -> Tensor:
        """(B, T) → (B, dim, T): out_project of the raw codebook rows."""
        return self.out_project(self.codebook(codes).transpose(1, 2))


class ResidualVQ(nn.Module):
    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.quantizers = nn.ModuleList([FactorizedVQ(dim, codebook_size, codebook_dim)])


class RepCodec(nn.Module):
    def __init__(self, cfg: IndexTTSConfig):
        super().__init__()
        c = cfg.semantic_codec
        self.encoder = nn.Sequential(VocosBackbone(c.hidden_size, c.vocos_dim, c.vocos_intermediate_dim,
                                                   c.vocos_num_layers), nn.Linear(c.vocos_dim, c.hidden_size))
        self.decoder = nn.Sequential(VocosBackbone(c.hidden_size, c.vocos_dim, c.vocos_intermediate_dim,
                                                   c.vocos_num_layers), nn.Linear(c.vocos_dim, c.hidden_size))
        self.quantizer = ResidualVQ(c.hidden_size, c.codebook_size, c.codebook_dim)

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, hidden) → (codes (B, T) int64, quantized (B, T, hidden))."""
        z = self.encoder(x.transpose(1, 2)).transpose(1, 2)  # (B, hidden, T)
        codes = self.quantizer.quantizers[0].indices(z)
        return codes, self.quantizer.quantizers[0].embed(codes).transpose(1, 2)

    def vq2emb(self, codes: Tensor) -> Tensor:
        """codes (B, T) → (B, T, hidden). Batched form (upstream's ``vq2emb(codes.unsqueeze(1))``
        idiom only works for B = 1)."""
        return self.quantizer.quantizers[0].embed(codes).transpose(1, 2)


def build_semantic_codec(cfg: IndexTTSConfig) -> RepCodec:
    return RepCodec(cfg).eval()


def write_semantic_codec(model: RepCodec, path: str | Path) -> None:
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    safetensors_save(unfold_weight_norm_keys(sd, WN_LAYERS), path)


def write_random_semantic_codec(cfg: IndexTTSConfig, path: str | Path, seed: int) -> None:
    torch.manual_seed(seed)
    write_semantic_codec(build_semantic_codec(cfg), path)


def load_semantic_codec(path: str | Path, cfg: IndexTTSConfig) -> RepCodec:
    sd = fold_weight_norm_keys(safetensors_load(path, "semantic codec"))
    model = RepCodec(cfg)
    load_strict(model, sd, str(path))
    return model.eval()
