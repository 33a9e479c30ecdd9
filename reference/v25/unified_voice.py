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
from torch import Tensor, nn

from indextts_trt.runtime.indextts25.config import IndexTTS25Config
from indextts_trt.runtime.text.multilingual import NUM_LANGUAGE_ROWS

from ..checkpoint_io import expect_mapping, load_strict, strip_prefix, torch_load, torch_save
from ..conformer import ConformerEncoder
from ..gpt2 import GPT2
from ..perceiver import PerceiverResampler
from ..unified_voice import LEGACY_PREFIXES, LEGACY_SUFFIXES, LearnedPositionEmbeddings, UnifiedVoice

NUM_ZERO_ROWS = 2  # upstream's torch.zeros(B, 2, D) in place of 2.0's two speed_emb rows


class UnifiedVoice25(nn.Module):
    def __init__(self, cfg: IndexTTS25Config):
        super().__init__()
        g = cfg.gpt
        d = g.model_dim
        self.cfg = cfg
        self.model_dim = d
        self.start_mel_token, self.stop_mel_token = g.start_mel_token, g.stop_mel_token
        self.start_text_token, self.stop_text_token = g.start_text_token, g.stop_text_token
        em = g.emo_condition_module
        # registration order follows upstream's constructor (it fixes nothing but the key order)
        self.spk_emb_proj = nn.Linear(cfg.campplus.embedding_size, d)
        self.emo_conditioning_encoder = ConformerEncoder(cfg.semantic_dim, em.output_size, em.attention_heads,
                                                         em.linear_units, em.num_blocks)
        self.emo_perceiver_encoder = PerceiverResampler(g.emo_dim, em.output_size, 1, em.perceiver_dim_head,
                                                        em.attention_heads, em.perceiver_mult)
        self.text_embedding = nn.Embedding(g.number_text_tokens + 1, d)
        self.lang_embedding = nn.Embedding(NUM_LANGUAGE_ROWS, d)
        self.emo_layer = nn.Linear(d, d)
        self.emovec_layer = nn.Linear(g.emo_dim, d)
        self.mel_embedding = nn.Embedding(g.number_mel_codes, d)
        self.gpt = GPT2(d, g.layers, g.heads)
        self.mel_pos_embedding = LearnedPositionEmbeddings(g.max_mel_tokens + 2 + g.max_conditioning_inputs, d)
        self.text_pos_embedding = LearnedPositionEmbeddings(g.max_text_tokens + 2, d)
        self.final_norm = nn.LayerNorm(d, eps=1e-5)
        self.text_head = nn.Linear(d, g.number_text_tokens + 1)
        self.mel_head = nn.Linear(d, g.number_mel_codes)
        for emb in (self.text_embedding, self.mel_embedding):
            nn.init.normal_(emb.weight, std=0.02)

    # shared with 2.0: the same code on the same sub-modules
    get_emovec = UnifiedVoice.get_emovec
    merge_emovec = UnifiedVoice.merge_emovec
    text_ids_with_bounds = UnifiedVoice.text_ids_with_bounds
    mel_embed = UnifiedVoice.mel_embed
    logits = UnifiedVoice.logits
    run_gpt = UnifiedVoice.run_gpt
    emo_vector_from_weights = UnifiedVoice.emo_vector_from_weights

    def conds_latent(self, style: Tensor, emovec: Tensor) -> Tensor:
        """style (B, 192) CAMPPlus vector, emovec (B, D) → (B, 3, D) = [proj(style) + emovec, 0, 0]."""
        lat = (self.spk_emb_proj(style) + emovec).unsqueeze(1)
        return torch.cat([lat, lat.new_zeros(lat.shape[0], NUM_ZERO_ROWS, lat.shape[2])], dim=1)

    def text_embed(self, wrapped_ids: Tensor, lang_id: int | Tensor) -> Tensor:
        """(L+2,) wrapped ids → (1, L+2, D): token + text position 0..L+1 + the language row."""
        pos = torch.arange(wrapped_ids.shape[-1], device=wrapped_ids.device)
        lang = torch.as_tensor(lang_id, dtype=torch.long, device=wrapped_ids.device).reshape(())
        x = self.text_embedding(wrapped_ids) + self.text_pos_embedding(pos)
        return (x + self.lang_embedding(lang)).unsqueeze(0)

    def prompt(self, conds: Tensor, text_ids: Tensor, lang_id: int | Tensor) -> Tensor:
        """(1, 3 + L + 2, D): [conds ; text], text ids stripped of 0/1 and re-wrapped."""
        return torch.cat([conds, self.text_embed(self.text_ids_with_bounds(text_ids), lang_id)], dim=1)


# ------------------------------------------------------------------------- checkpoint I/O


def build_unified_voice_v25(cfg: IndexTTS25Config) -> UnifiedVoice25:
    return UnifiedVoice25(cfg).eval()


def write_random_unified_voice_v25(cfg: IndexTTS25Config, path: str | Path, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_unified_voice_v25(cfg)
    with torch.no_grad():  # as for 2.0: keep a random GPT from stopping after a few codes
        model.mel_head.bias[cfg.gpt.stop_mel_token] -= 2.0
    torch_save({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, path)


def load_unified_voice_v25(path: str | Path, cfg: IndexTTS25Config) -> UnifiedVoice25:
    """Strict: every missing, unknown or mis-shaped key is named (upstream: strict=False, prints)."""
    sd = expect_mapping(torch_load(path, "gpt checkpoint"), path)
    if "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    sd = strip_prefix(sd)
    sd = {k: v for k, v in sd.items() if not k.startswith(LEGACY_PREFIXES) and not k.endswith(LEGACY_SUFFIXES)}
    model = UnifiedVoice25(cfg)
    load_strict(model, sd, str(path))
    return model.eval()
