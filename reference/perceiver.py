"""Perceiver resampler that turns conformer frames into a fixed number of latents (§3.3).

Each layer's attention takes keys/values from ``concat(latents, context)`` (upstream's
``cross_attn_include_queries``); the final norm is upstream's RMSNorm, ``normalize(x)·√d·γ``,
which has no epsilon term inside the square root (it is F.normalize's clamp instead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .conformer import MASK_BIAS


class GEGLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x  # exact (erf) GELU


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    inner = int(dim * mult * 2 / 3)
    return nn.Sequential(nn.Linear(dim, inner * 2), GEGLU(), nn.Linear(inner, dim))  # keys 0 and 2


class Attention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        inner = dim_head * heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: Tensor, context: Tensor, bias: Tensor) -> Tensor:
        b, n, _ = latents.shape
        kv_in = torch.cat((latents, context), dim=-2)
        q = self.to_q(latents).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.to_kv(kv_in).chunk(2, dim=-1)
        k = k.reshape(b, kv_in.size(1), self.heads, -1).transpose(1, 2)
        v = v.reshape(b, kv_in.size(1), self.heads, -1).transpose(1, 2)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale + bias, dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class PerceiverResampler(nn.Module):
    def __init__(self, dim: int, dim_context: int, num_latents: int, dim_head: int, heads: int,
                 ff_mult: int, depth: int = 2):
        super().__init__()
        self.proj_context = nn.Linear(dim_context, dim) if dim_context != dim else nn.Identity()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, dim_head, heads), feed_forward(dim, ff_mult)]) for _ in range(depth)
        )
        self.norm = RMSNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, T, dim_context); mask (B, T) bool True = valid. Returns (B, num_latents, dim)."""
        b = x.shape[0]
        ctx = self.proj_context(x)
        latents = self.latents.unsqueeze(0).expand(b, -1, -1)
        n = latents.shape[1]
        if mask is None:
            bias = torch.zeros(b, 1, 1, n + x.shape[1], dtype=x.dtype, device=x.device)
        else:  # the latents themselves are always valid keys (upstream pads the mask with True)
            keep = torch.cat([torch.ones(b, n, dtype=torch.bool, device=x.device), mask], dim=1)
            bias = ((~keep).to(x.dtype) * MASK_BIAS)[:, None, None, :]
        for attn, ff in self.layers:
            latents = attn(latents, ctx, bias) + latents
            latents = ff(latents) + latents
        return self.norm(latents)
