"""WeNet-style Conformer encoder used for IndexTTS-2's speaker and emotion conditioning.

Released key names (ARCHITECTURE.md §3.3, §3.8). Numerics reproduced on purpose:
- conv2d2 subsampling treats the 1024-dim feature axis as an image axis; T' = (T - 1) // 2 and the
  time mask is subsampled as ``mask[:, :, 2::2]``;
- relative-position attention WITHOUT ``rel_shift``: ``pos_emb`` holds the absolute sinusoid rows
  0..T'-1, so the second score term is an absolute-position bias (upstream's behaviour);
- LayerNorm (not BatchNorm) in the conv module; padded frames zeroed before and after it.

Masks are additive float biases (``MASK_BIAS``): fp16-safe for export. Whenever a row has at least
one valid key, ``exp(-1e4 - max)`` underflows to exactly 0 in fp32, so the result equals
upstream's ``masked_fill(-inf)`` followed by ``masked_fill(0)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_BIAS = -1e4  # fp16-safe "minus infinity" for additive masks


def sinusoid_table(max_len: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...) — shape (1, max_len, d)."""
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * -(math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(0)


class RelPositionalEncoding(nn.Module):
    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        self.xscale = math.sqrt(d_model)
        self.register_buffer("pe", sinusoid_table(max_len, d_model))  # persistent: it is in gpt.pth

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.xscale, self.pe[:, : x.size(1)]


class Conv2dSubsampling2(nn.Module):
    def __init__(self, idim: int, odim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, odim, 3, 2), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(odim * ((idim - 1) // 2), odim))
        self.pos_enc = RelPositionalEncoding(odim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        x, pos_emb = self.pos_enc(x)
        return x, pos_emb, mask[:, :, 2::2]


class RelPositionMultiHeadedAttention(nn.Module):
    def __init__(self, n_head: int, n_feat: int):
        super().__init__()
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(n_head, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(n_head, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, x: Tensor, bias: Tensor, pos_emb: Tensor) -> Tensor:
        """x (B, T, D); bias (B, 1, 1, T) additive key mask; pos_emb (1, T, D)."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)  # (B, T, H, dk)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T, dk)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scores = (q_u @ k.transpose(-2, -1) + q_v @ p.transpose(-2, -1)) / math.sqrt(self.d_k)
        attn = torch.softmax(scores + bias, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out)


class ConvolutionModule(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, 1)
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2,
                                        groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pointwise_conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x (B, T, C); keep (B, 1, T) float 1/0 for valid/padded frames."""
        x = x.transpose(1, 2) * keep
        x = F.glu(self.pointwise_conv1(x), dim=1)
        x = self.depthwise_conv(x)
        x = F.silu(self.norm(x.transpose(1, 2))).transpose(1, 2)
        x = self.pointwise_conv2(x) * keep
        return x.transpose(1, 2)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, idim: int, hidden: int):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden)
        self.w_2 = nn.Linear(hidden, idim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerEncoderLayer(nn.Module):
    def __init__(self, size: int, heads: int, linear_units: int, kernel: int):
        super().__init__()
        self.self_attn = RelPositionMultiHeadedAttention(heads, size)
        self.feed_forward = PositionwiseFeedForward(size, linear_units)
        self.conv_module = ConvolutionModule(size, kernel)
        self.norm_ff = nn.LayerNorm(size, eps=1e-5)
        self.norm_mha = nn.LayerNorm(size, eps=1e-5)
        self.norm_conv = nn.LayerNorm(size, eps=1e-5)
        self.norm_final = nn.LayerNorm(size, eps=1e-5)

    def forward(self, x: Tensor, bias: Tensor, keep: Tensor, pos_emb: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm_mha(x), bias, pos_emb)
        x = x + self.conv_module(self.norm_conv(x), keep)
        x = x + self.feed_forward(self.norm_ff(x))
        return self.norm_final(x)


class ConformerEncoder(nn.Module):
    def __init__(self, input_size: int, output_size: int, attention_heads: int, linear_units: int,
                 num_blocks: int, cnn_module_kernel: int = 15):
        super().__init__()
        self.embed = Conv2dSubsampling2(input_size, output_size)
        self.encoders = nn.ModuleList(
            ConformerEncoderLayer(output_size, attention_heads, linear_units, cnn_module_kernel)
            for _ in range(num_blocks)
        )
        self.after_norm = nn.LayerNorm(output_size, eps=1e-5)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, input_size); mask (B, T) bool, True = valid (None: all valid).

        Returns (B, T', output_size) with T' = (T - 1) // 2, and the mask (B, 1, T') bool.
        Upstream passes the feature width (1024) as the "length", so its mask is all-valid for
        every prompt under 1024 frames: pass ``mask=None`` to reproduce it.
        """
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        x, pos_emb, sub = self.embed(x, mask.unsqueeze(1))  # sub (B, 1, T')
        keep = sub.to(x.dtype)
        bias = ((1.0 - keep) * MASK_BIAS).unsqueeze(1)  # (B, 1, 1, T')
        for layer in self.encoders:
            x = layer(x, bias, keep, pos_emb)
        return self.after_norm(x), sub
