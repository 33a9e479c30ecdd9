"""Export adapters of the stages IndexTTS-2.5 adds or changes; the shared stages use IndexTTS-2's
adapters (export/indextts2/adapters.py) unchanged, the GPT decode step included. Each wraps the
reference modules as a tensor-in/tensor-out module in its spec's argument order."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SpeakerProjection(nn.Module):
    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, style: Tensor, emovec: Tensor) -> Tensor:
        return self.gpt.conds_latent(style, emovec)  # (1, 3, D)


class GptPrefill(nn.Module):
    """[conds ; text emb + text pos + language row ; start code at mel position 0] → (last
    logits, kv). The KV cache is laid out as IndexTTS-2's prefill lays it out (L, 2, B, H, S, hd):
    the shared decode step and the pipeline's cache read it."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, conds: Tensor, text_ids: Tensor, lang_id: Tensor) -> tuple[Tensor, Tensor]:
        g = self.gpt
        text = g.text_embed(text_ids[0], lang_id)  # (1, L_text, D)
        start = torch.full((1, 1), g.start_mel_token, dtype=torch.long, device=conds.device)
        mel = g.mel_embed(start, torch.zeros_like(start))  # (1, 1, D)
        h, cache = g.run_gpt(torch.cat([conds, text, mel], dim=1))
        logits = g.logits(h[:, -1])  # mel_head(final_norm(ln_f(h)))
        kv = torch.stack([torch.stack([k, v]) for k, v in cache])  # (L, 2, 1, H, S, hd)
        return logits, kv


class CodecDecode(nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, codes: Tensor) -> Tensor:
        return self.codec.decode(codes)  # (1, 2N, hidden)
