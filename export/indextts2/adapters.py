"""Export adapters: each wraps reference modules as a tensor-in/tensor-out module whose argument
order is its stage spec's input order. The reference modules are used untouched.

The GPT decode step reads a cache of (layer, key/value) parts, each (B, H, CAP, hd) and its own
input (``CacheSpec``: a Slice of one whole-cache input would copy it every step), and never
writes it: attention covers each row's own valid positions (``< cache_len[b]``, so rows of different requests and
lengths can share a step) plus the new token's own key/value, and the step returns only that new
key/value, ``kv_new`` (layers, 2, B, H, 1, hd). The runtime writes it into its cache at each
row's position (a few KB, host or device): no graph copies or scatters the whole cache, no
backend needs an input and an output to alias, and the cache is the runtime's to grow, reorder
and share between requests.

The DiT stage is one whole flow-matching Euler step (``reference.cfm.euler_step``): the CFG batch
[x; x] is built inside, the guided velocity combined and the prompt frames zeroed, so the solver
loop only feeds ``x`` back (a device-resident ping-pong for TensorRT) and the constant inputs are
bound once per segment.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from indextts_trt.reference.cfm import euler_step
from indextts_trt.reference.conformer import MASK_BIAS

from .bigvgan_export import polyphase_bigvgan


class SemanticEncoder(nn.Module):
    def __init__(self, w2v):
        super().__init__()
        self.w2v = w2v

    def forward(self, input_features: Tensor, attention_mask: Tensor) -> Tensor:
        return self.w2v(input_features, attention_mask)


class SemanticCodec(nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, semantic_features: Tensor) -> tuple[Tensor, Tensor]:
        return self.codec.quantize(semantic_features)


class Vq2Emb(nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, codes: Tensor) -> Tensor:
        return self.codec.vq2emb(codes)


class Campplus(nn.Module):
    def __init__(self, campplus):
        super().__init__()
        self.m = campplus

    def forward(self, fbank: Tensor) -> Tensor:
        return self.m(fbank)


class SpeakerConditioning(nn.Module):
    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, semantic_features: Tensor) -> Tensor:
        return self.gpt.get_conditioning(semantic_features)


class EmotionConditioning(nn.Module):
    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, semantic_features: Tensor) -> Tensor:
        return self.gpt.get_emovec(semantic_features)


class GptPrefill(nn.Module):
    """[conds ; text emb + text pos ; mel emb + mel pos] → (hidden, last logits, kv)."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, conds: Tensor, text_ids: Tensor, mel_ids: Tensor, mel_pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        g = self.gpt
        text_pos = torch.arange(text_ids.shape[1], device=text_ids.device)
        text = g.text_embedding(text_ids) + g.text_pos_embedding(text_pos)[None]
        mel = g.mel_embed(mel_ids, mel_pos)
        h, cache = g.run_gpt(torch.cat([conds, text, mel], dim=1))
        hidden = g.final_norm(h)
        logits = g.mel_head(hidden[:, -1])
        kv = torch.stack([torch.stack([k, v]) for k, v in cache])  # (L, 2, B, H, S, hd)
        return hidden, logits, kv


class GptDecode(nn.Module):
    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, mel_ids: Tensor, mel_pos: Tensor, cache_len: Tensor, *kv: Tensor) -> tuple[Tensor, Tensor]:
        """``kv``: layer 0's keys, layer 0's values, layer 1's keys, ... each (B, H, CAP, hd)."""
        g = self.gpt
        x = g.mel_embed(mel_ids, mel_pos)  # (B, 1, D)
        b, d = x.shape[0], x.shape[-1]
        cap = kv[0].shape[2]
        valid = (torch.arange(cap, device=x.device)[None, :] < cache_len[:, None]).to(x.dtype)  # (B, CAP)
        bias = ((1.0 - valid) * MASK_BIAS)[:, None, None, :]  # (B, 1, 1, CAP), fp16-safe additive mask
        new_k, new_v = [], []
        for i, block in enumerate(g.gpt.h):
            att = block.attn
            y = block.ln_1(x)
            q, k, v = att.c_attn(y).split(d, dim=-1)
            q, k, v = (t.view(b, 1, att.heads, att.hd).transpose(1, 2) for t in (q, k, v))  # (B, H, 1, hd)
            k_cache, v_cache = kv[2 * i], kv[2 * i + 1]  # (B, H, CAP, hd)
            # K·qᵀ streams the cached keys row by row (a GEMV); q·Kᵀ would transpose them first
            s_cache = (k_cache @ q.transpose(-2, -1)).transpose(-2, -1) / math.sqrt(att.hd) + bias  # (B, H, 1, CAP)
            s_self = (q * k).sum(-1, keepdim=True) / math.sqrt(att.hd)  # (B, H, 1, 1)
            p = torch.softmax(torch.cat([s_cache, s_self], dim=-1), dim=-1)
            o = p[..., :cap] @ v_cache + p[..., cap:] * v  # (B, H, 1, hd)
            x = x + att.c_proj(o.transpose(1, 2).reshape(b, 1, d))
            x = x + block.mlp(block.ln_2(x))
            new_k.append(k)
            new_v.append(v)
        logits = g.mel_head(g.final_norm(g.gpt.ln_f(x)))[:, 0]
        return logits, torch.stack([torch.stack(new_k), torch.stack(new_v)], dim=1)  # kv_new (L, 2, B, H, 1, hd)


class GptLayer(nn.Module):
    def __init__(self, s2mel):
        super().__init__()
        self.m = s2mel.gpt_layer

    def forward(self, latent: Tensor) -> Tensor:
        return self.m(latent)


class LengthRegulator(nn.Module):
    def __init__(self, s2mel):
        super().__init__()
        self.lr = s2mel.length_regulator

    def forward(self, content: Tensor, src_index: Tensor) -> Tensor:
        x = self.lr.content_in_proj(content).transpose(1, 2)
        return self.lr.model(x.index_select(2, src_index)).transpose(1, 2)


class DitStep(nn.Module):
    def __init__(self, s2mel):
        super().__init__()
        self.est = s2mel.estimator

    def forward(self, x: Tensor, prompt_x: Tensor, x_lens: Tensor, prompt_len: Tensor, t: Tensor, dt: Tensor,
                style: Tensor, cond: Tensor, cfg_rate: Tensor) -> tuple[Tensor, Tensor]:
        return euler_step(self.est, x, prompt_x, x_lens, prompt_len, t, dt, style, cond, cfg_rate)


class Vocoder(nn.Module):
    """Eager: upstream's formulation (the parity gate's reference). Exported: the same model with its
    anti-aliased activations in polyphase form (``bigvgan_export.py``: ONNX Runtime's CPU provider
    runs upstream's depthwise transposed convolutions slower than torch), the weights shared."""

    def __init__(self, bigvgan):
        super().__init__()
        self.m = bigvgan
        self.polyphase = polyphase_bigvgan(bigvgan)

    def forward(self, mel: Tensor) -> Tensor:
        return self.polyphase(mel) if torch.compiler.is_exporting() else self.m(mel)

