"""UnifiedVoice as IndexTTS-2.5 builds it: ``model_v2.UnifiedVoice(spk_cond_mode="campplus")``.

Against 2.0 (reference/unified_voice.py), with the same ``gpt.pth`` key names for what is shared:
- no speaker conformer/perceiver and no ``speed_emb``: the speaker enters as ONE latent,
  ``spk_emb_proj(style)`` (Linear(192 → D) on the CAMPPlus vector) + emovec, followed by two
  all-zero rows → a 3-row conditioning prefix (2.0: 32 + 2 = 34);
- ``lang_embedding`` (Embedding(107, D)) is added to every text position, the start/stop
  markers included (``prepare_gpt_inputs``: ``text_emb += lang_embedding(langs[i])``);
- the emotion path (conformer + perceiver + emovec_layer + emo_layer) is 2.0's, with its
  all-valid mask quirk; ``text_head`` stays in the file (unused at inference).
Decoding, positions and the repetition-penalty history are 2.0's (reference/generation.py).
Upstream left-pads the prompt with zero rows under attention mask 0 — one row for the stop id it
appends to every segment plus one per id 0/1 it strips; a masked key gets weight exp(-inf) = 0,
so dropping those rows changes nothing but the summation order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from indextts_trt.runtime.indextts25.config import CONDITIONING_ROWS, IndexTTS25Config

from ..unified_voice import UnifiedVoice, load_unified_voice, write_random_unified_voice


class UnifiedVoice25(UnifiedVoice):
    """The emotion path, embeddings, GPT-2 and heads are IndexTTS-2's code (the same class in
    upstream's campplus mode); what differs is the conditioning prefix and the language row."""

    def __init__(self, cfg: IndexTTS25Config):
        super().__init__(cfg, spk_cond_mode="campplus")

    def conds_latent(self, style: Tensor, emovec: Tensor) -> Tensor:
        """style (B, 192) CAMPPlus vector, emovec (B, D) → (B, 3, D) = [proj(style) + emovec, 0, 0]."""
        lat = (self.spk_emb_proj(style) + emovec).unsqueeze(1)
        return torch.cat([lat, lat.new_zeros(lat.shape[0], CONDITIONING_ROWS - 1, lat.shape[2])], dim=1)

    def text_embed(self, wrapped_ids: Tensor, lang_id: int | Tensor) -> Tensor:
        """(L+2,) wrapped ids → (1, L+2, D): token + text position 0..L+1 + the language row."""
        lang = torch.as_tensor(lang_id, dtype=torch.long, device=wrapped_ids.device).reshape(())
        return super().text_embed(wrapped_ids) + self.lang_embedding(lang)

    def prompt(self, conds: Tensor, text_ids: Tensor, lang_id: int | Tensor) -> Tensor:
        """(1, 3 + L + 2, D): [conds ; text], text ids stripped of 0/1 and re-wrapped."""
        return torch.cat([conds, self.text_embed(self.text_ids_with_bounds(text_ids), lang_id)], dim=1)


# ------------------------------------------------------------------------- checkpoint I/O


def build_unified_voice_v25(cfg: IndexTTS25Config) -> UnifiedVoice25:
    return UnifiedVoice25(cfg).eval()


def write_random_unified_voice_v25(cfg: IndexTTS25Config, path: str | Path, seed: int) -> None:
    write_random_unified_voice(cfg, path, seed, UnifiedVoice25)


def load_unified_voice_v25(path: str | Path, cfg: IndexTTS25Config) -> UnifiedVoice25:
    return load_unified_voice(path, cfg, UnifiedVoice25)
