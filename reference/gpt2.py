"""GPT-2 backbone as IndexTTS-2 uses it: inputs are embeddings (no wte/wpe), pre-LN blocks,
tanh-approximate GELU, LayerNorm eps 1e-5, ``ln_f`` at the end.

Key names are HF ``GPT2Model``'s (``h.{i}.attn.c_attn.weight`` ...). HF stores its ``Conv1D``
weights as **[in, out]** (y = x·W + b); we keep that layout so ``gpt.pth`` loads unchanged.
The KV cache is explicit: per layer a ``(k, v)`` pair of (B, H, T, head_dim) tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KVCache = list[tuple[Tensor, Tensor]]


class Conv1D(nn.Module):
    """HF GPT-2's linear layer with the weight stored transposed: weight (in, out)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.c_attn = Conv1D(d, 3 * d)  # output columns ordered q | k | v
        self.c_proj = Conv1D(d, d)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, s, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))  # (B, H, S, hd)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        t = k.size(2)
        # query i sits at absolute position t - s + i and sees keys 0..t - s + i
        causal = torch.ones(s, t, dtype=torch.bool, device=x.device).tril(t - s)
        # additive -1e4 instead of HF's finfo.min fill: exp underflows to exactly 0 in fp32 either
        # way (every query sees itself), and the constant survives fp16 in an exported graph
        bias = (~causal).to(x.dtype) * -1e4
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd) + bias
        out = torch.softmax(scores, dim=-1) @ v
        return self.c_proj(out.transpose(1, 2).reshape(b, s, d)), (k, v)


class MLP(nn.Module):
    def __init__(self, d: int, inner: int):
        super().__init__()
        self.c_fc = Conv1D(d, inner)
        self.c_proj = Conv1D(inner, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # HF "gelu_new"


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, heads)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = MLP(d, 4 * d)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


class GPT2(nn.Module):
    def __init__(self, d: int, layers: int, heads: int):
        super().__init__()
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, x: Tensor, past: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """x (B, S, D) embeddings; returns (hidden after ln_f (B, S, D), present cache)."""
        present: KVCache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, None if past is None else past[i])
            present.append(kv)
        return self.ln_f(x), present


def reorder_cache(cache: KVCache, beam_index: Tensor) -> KVCache:
    """New row j = old row beam_index[j] (HF ``_reorder_cache``)."""
    return [(k.index_select(0, beam_index), v.index_select(0, beam_index)) for k, v in cache]
