"""The S2Mel DiT estimator (ARCHITECTURE.md §4.2): one flow-matching velocity evaluation.

Reproduced on purpose: cos-before-sin time embedding scaled by 1000; AdaRMS with the RMSNorm in
fp32; **interleaved** RoPE pairs (2j, 2j+1) over positions 0..T-1; U-ViT skips (layers below
depth//2 push, layers above pop LIFO through ``skip_in_linear``); the long skip; a WaveNet post-net
conditioned on time (not style); unused modules kept because ``s2mel.pth`` holds them.
The key mask from ``x_lens`` is an additive float bias (fp16-safe); for every query row it has at
least one valid key, so it equals upstream's boolean SDPA mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig

from .conformer import MASK_BIAS
from .wavenet import WN

ROPE_TABLE = 16384  # upstream hard-codes block_size 16384 (the config's 8192 is ignored)


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        half = freq_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half))

    def forward(self, t: Tensor) -> Tensor:
        args = 1000 * t[:, None].float() * self.freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))  # cos first


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class AdaptiveLayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.project_layer = nn.Linear(dim, 2 * dim)
        self.norm = RMSNorm(dim)
        self.dim = dim

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        w, b = torch.split(self.project_layer(c), self.dim, dim=-1)
        return w * self.norm(x) + b


def rope_table(n: int, head_dim: int, base: float = 10000.0) -> Tensor:
    """(n, head_dim/2, 2) of (cos, sin) per position and pair (upstream precompute_freqs_cis)."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    ang = torch.outer(torch.arange(n).float(), freqs)
    return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)


def apply_rope(x: Tensor, table: Tensor) -> Tensor:
    """x (B, T, H, hd) with interleaved pairs (2j, 2j+1) rotated by table (T, hd/2, 2)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    c, s = table[None, :, None, :, 0], table[None, :, None, :, 1]
    out = torch.stack([xs[..., 0] * c - xs[..., 1] * s, xs[..., 1] * c + xs[..., 0] * s], dim=-1)
    return out.flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, rope: Tensor, bias: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.wqkv(x).split(d, dim=-1)
        q = apply_rope(q.view(b, t, self.heads, self.hd), rope).transpose(1, 2)
        k = apply_rope(k.view(b, t, self.heads, self.hd), rope).transpose(1, 2)
        v = v.view(b, t, self.heads, self.hd).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.hd) + bias, dim=-1)
        return self.wo((att @ v).transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.attention = Attention(dim, heads)
        self.feed_forward = FeedForward(dim, ffn)
        self.ffn_norm = AdaptiveLayerNorm(dim)
        self.attention_norm = AdaptiveLayerNorm(dim)
        self.skip_in_linear = nn.Linear(dim * 2, dim)  # present in every layer; used by the receivers

    def forward(self, x: Tensor, c: Tensor, rope: Tensor, bias: Tensor, skip: Tensor | None) -> Tensor:
        if skip is not None:
            x = self.skip_in_linear(torch.cat([x, skip], dim=-1))
        h = x + self.attention(self.attention_norm(x, c), rope, bias)
        return h + self.feed_forward(self.ffn_norm(h, c))


class Transformer(nn.Module):
    def __init__(self, dim: int, heads: int, depth: int):
        super().__init__()
        ffn = find_multiple(int(2 * (4 * dim) / 3), 256)
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, ffn) for _ in range(depth))
        self.norm = AdaptiveLayerNorm(dim)
        self.emit = [i for i in range(depth) if i < depth // 2]
        self.receive = [i for i in range(depth) if i > depth // 2]
        # not a buffer upstream (rebuilt in setup_caches), so not in s2mel.pth
        self.rope = rope_table(ROPE_TABLE, dim // heads)

    def forward(self, x: Tensor, c: Tensor, bias: Tensor) -> Tensor:
        rope = self.rope[: x.shape[1]].to(x.device)
        stack: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            skip = stack.pop(-1) if i in self.receive else None
            x = layer(x, c, rope, bias, skip)
            if i in self.emit:
                stack.append(x)
        return self.norm(x, c)


class FinalLayer(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, hidden)  # weight-normed in the checkpoint
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(self.norm_final(x) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1))


class DiT(nn.Module):
    def __init__(self, cfg: IndexTTSConfig):
        super().__init__()
        d, w, s = cfg.s2mel.DiT, cfg.s2mel.wavenet, cfg.s2mel
        h, n_mels = d.hidden_dim, d.in_channels
        self.in_channels = n_mels
        self.transformer = Transformer(h, d.num_heads, d.depth)
        self.x_embedder = nn.Linear(n_mels, h)  # unused; weight-normed in the checkpoint
        self.cond_embedder = nn.Embedding(d.content_codebook_size, h)  # unused (discrete content)
        self.cond_projection = nn.Linear(d.content_dim, h)
        self.t_embedder = TimestepEmbedder(h)
        self.register_buffer("input_pos", torch.arange(ROPE_TABLE))
        self.t_embedder2 = TimestepEmbedder(w.hidden_dim)
        self.conv1 = nn.Linear(h, w.hidden_dim)
        self.conv2 = nn.Conv1d(w.hidden_dim, n_mels, 1)
        self.wavenet = WN(w.hidden_dim, w.kernel_size, w.dilation_rate, w.num_layers, w.hidden_dim)
        self.final_layer = FinalLayer(w.hidden_dim)
        self.res_projection = nn.Linear(h, w.hidden_dim)
        self.content_mask_embedder = nn.Embedding(1, h)  # unused
        self.skip_linear = nn.Linear(h + n_mels, h)
        self.cond_x_merge_linear = nn.Linear(h + 2 * n_mels + s.style_encoder.dim, h)

    def forward(self, x: Tensor, prompt_x: Tensor, x_lens: Tensor, t: Tensor, style: Tensor, cond: Tensor) -> Tensor:
        """x, prompt_x (B, n_mels, T); x_lens (B,); t (B,); style (B, S); cond (B, T, C) → (B, n_mels, T)."""
        b, _, T = x.shape
        t1 = self.t_embedder(t)  # (B, H)
        xt = x.transpose(1, 2)
        x_in = torch.cat([xt, prompt_x.transpose(1, 2), self.cond_projection(cond),
                          style[:, None, :].expand(b, T, style.shape[-1])], dim=-1)
        x_in = self.cond_x_merge_linear(x_in)
        valid = (torch.arange(T, device=x.device)[None] < x_lens[:, None]).to(x.dtype)  # (B, T)
        bias = ((1.0 - valid) * MASK_BIAS)[:, None, None, :]  # (B, 1, 1, T) key mask
        x_res = self.transformer(x_in, t1.unsqueeze(1), bias)
        x_res = self.skip_linear(torch.cat([x_res, xt], dim=-1))
        h = self.conv1(x_res).transpose(1, 2)
        t2 = self.t_embedder2(t)
        h = self.wavenet(h, valid.unsqueeze(1), t2.unsqueeze(2), x_lens).transpose(1, 2) + self.res_projection(x_res)
        return self.conv2(self.final_layer(h, t1).transpose(1, 2))


# weight-normed layers of the estimator, as the checkpoint stores them (prefix inside net["cfm"])
def weight_norm_layers(cfg: IndexTTSConfig) -> list[str]:
    n = cfg.s2mel.wavenet.num_layers
    names = ["estimator.x_embedder", "estimator.final_layer.linear", "estimator.wavenet.cond_layer.conv.conv"]
    names += [f"estimator.wavenet.in_layers.{i}.conv.conv" for i in range(n)]
    names += [f"estimator.wavenet.res_skip_layers.{i}.conv.conv" for i in range(n)]
    return names
