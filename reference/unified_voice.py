"""UnifiedVoice v2: the GPT side of IndexTTS-2 (ARCHITECTURE.md §3), with ``gpt.pth``'s key names.

Quirks reproduced on purpose:
- logits = ``mel_head(final_norm(ln_f(h)))``: two LayerNorms in series (GPT-2's own ``ln_f``, then
  ``final_norm``). The TensorRT-LLM peer drops one of them.
- conditioning = [perceiver(conformer(spk)) + emovec (broadcast), speed_emb[1], speed_emb[0]].
- the conformers run with an all-valid mask (upstream passes the feature width 1024 as length).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig
from indextts_trt.runtime.text.multilingual import NUM_LANGUAGE_ROWS

from .checkpoint_io import CheckpointError, expect_mapping, load_pickled, load_strict, strip_prefix, torch_save
from .conformer import ConformerEncoder
from .gpt2 import GPT2, KVCache
from .perceiver import PerceiverResampler

# keys older checkpoints may carry that inference does not use (upstream loads with strict=False)
LEGACY_PREFIXES = ("inference_model.", "gpt.wte.", "gpt.wpe.", "lm_head.")
LEGACY_SUFFIXES = (".attn.bias", ".attn.masked_bias")


class LearnedPositionEmbeddings(nn.Module):
    def __init__(self, seq_len: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(seq_len, dim)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, positions: Tensor) -> Tensor:
        return self.emb(positions)


class UnifiedVoice(nn.Module):
    """``spk_cond_mode`` as upstream's model_v2: "conformer" (IndexTTS-2: speaker conformer +
    perceiver, speed rows) or "campplus" (IndexTTS-2.5: ``spk_emb_proj`` on the CAMPPlus vector and
    a ``lang_embedding``; see reference/v25/unified_voice.py). Modules are registered in upstream's
    order, which fixes the random initialization of the checkpoints we write."""

    def __init__(self, cfg: IndexTTSConfig, spk_cond_mode: str = "conformer"):
        super().__init__()
        g = cfg.gpt
        d = g.model_dim
        self.cfg = cfg
        self.model_dim = d
        self.start_mel_token, self.stop_mel_token = g.start_mel_token, g.stop_mel_token
        self.start_text_token, self.stop_text_token = g.start_text_token, g.stop_text_token
        cm, em = g.condition_module, g.emo_condition_module
        campplus = spk_cond_mode == "campplus"
        if campplus:
            self.spk_emb_proj = nn.Linear(cfg.campplus.embedding_size, d)  # upstream: a literal 192
        else:
            self.conditioning_encoder = ConformerEncoder(cfg.semantic_dim, cm.output_size, cm.attention_heads,
                                                         cm.linear_units, cm.num_blocks)
            self.perceiver_encoder = PerceiverResampler(d, cm.output_size, g.condition_num_latent,
                                                        cm.perceiver_dim_head, cm.attention_heads, cm.perceiver_mult)
            self.speed_emb = nn.Embedding(2, d)
        self.emo_conditioning_encoder = ConformerEncoder(cfg.semantic_dim, em.output_size, em.attention_heads,
                                                         em.linear_units, em.num_blocks)
        self.emo_perceiver_encoder = PerceiverResampler(g.emo_dim, em.output_size, 1, em.perceiver_dim_head,
                                                        em.attention_heads, em.perceiver_mult)
        self.text_embedding = nn.Embedding(g.number_text_tokens + 1, d)
        if campplus:
            self.lang_embedding = nn.Embedding(NUM_LANGUAGE_ROWS, d)  # len(LANGUAGE_DICT) + 1
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

    # ------------------------------------------------------------------ conditioning

    def get_conditioning(self, spk_cond_emb: Tensor) -> Tensor:
        """(B, T, semantic_dim) → (B, num_latent, D)."""
        return self.perceiver_encoder(self.conditioning_encoder(spk_cond_emb)[0])

    def get_emovec(self, emo_cond_emb: Tensor) -> Tensor:
        """(B, T, semantic_dim) → (B, D)."""
        x = self.emo_perceiver_encoder(self.emo_conditioning_encoder(emo_cond_emb)[0]).squeeze(1)
        return self.emo_layer(self.emovec_layer(x))

    def merge_emovec(self, spk_cond_emb: Tensor, emo_cond_emb: Tensor, alpha: float = 1.0) -> Tensor:
        emo, base = self.get_emovec(emo_cond_emb), self.get_emovec(spk_cond_emb)
        return base + alpha * (emo - base)

    def speed_rows(self, batch: int) -> Tensor:
        """[speed_emb[1], speed_emb[0]] → (B, 2, D) (upstream's duration_emb_half, duration_emb)."""
        return self.speed_emb.weight[[1, 0]].unsqueeze(0).expand(batch, -1, -1)

    def conds_latent(self, spk_cond_emb: Tensor, emovec: Tensor) -> Tensor:
        """(B, num_latent + 2, D): the conditioning prefix of every GPT pass."""
        lat = self.get_conditioning(spk_cond_emb) + emovec.unsqueeze(1)
        return torch.cat([lat, self.speed_rows(lat.shape[0])], dim=1)

    # ------------------------------------------------------------------ embeddings / heads

    def text_ids_with_bounds(self, text_ids: Tensor) -> Tensor:
        """Strip ids 0/1 and wrap as [start_text, ..., stop_text] (prepare_gpt_inputs)."""
        ids = text_ids[(text_ids != self.start_text_token) & (text_ids != self.stop_text_token)]
        return F.pad(F.pad(ids, (1, 0), value=self.start_text_token), (0, 1), value=self.stop_text_token)

    def text_embed(self, wrapped_ids: Tensor) -> Tensor:
        """(L+2,) wrapped ids → (1, L+2, D) with text positions 0..L+1."""
        pos = torch.arange(wrapped_ids.shape[-1], device=wrapped_ids.device)
        return (self.text_embedding(wrapped_ids) + self.text_pos_embedding(pos)).unsqueeze(0)

    def mel_embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        return self.mel_embedding(ids) + self.mel_pos_embedding(positions)

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden is GPT-2's output (ln_f already applied); final_norm is applied again here."""
        return self.mel_head(self.final_norm(hidden))

    def run_gpt(self, x: Tensor, past: KVCache | None = None) -> tuple[Tensor, KVCache]:
        return self.gpt(x, past)

    # ------------------------------------------------------------------ emotion presets

    def emo_vector_from_weights(self, weights: Tensor, style: Tensor, spk_matrix: Sequence[Tensor],
                                emo_matrix: Sequence[Tensor], use_random: bool = False,
                                generator: torch.Generator | None = None) -> Tensor:
        """Σ_i w_i · emo_matrix_i[row_i], row_i = argmax cosine(style, spk_matrix_i) (or random). (1, D)"""
        rows = []
        for i, (spk_rows, emo_rows) in enumerate(zip(spk_matrix, emo_matrix)):
            if use_random:
                idx = int(torch.randint(0, spk_rows.shape[0], (1,), generator=generator))
            else:
                idx = int(torch.argmax(F.cosine_similarity(style.float(), spk_rows.float(), dim=1)))
            rows.append(emo_rows[idx])
        mat = torch.stack(rows)  # (8, D)
        return (weights.to(mat.dtype).unsqueeze(1) * mat).sum(0, keepdim=True)


# ------------------------------------------------------------------------- checkpoint I/O


def build_unified_voice(cfg: IndexTTSConfig) -> UnifiedVoice:
    return UnifiedVoice(cfg).eval()


def write_unified_voice(model: UnifiedVoice, path: str | Path) -> None:
    torch_save({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, path)


def write_random_unified_voice(cfg: IndexTTSConfig, path: str | Path, seed: int, cls: type = UnifiedVoice) -> None:
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    if hasattr(model, "speed_emb"):
        # upstream initializes speed_emb to zeros; random rows make a swapped index visible in tests
        nn.init.normal_(model.speed_emb.weight, std=0.02)
    # a random GPT would emit the stop code after a few dozen steps; bias it down so a random
    # checkpoint speaks for seconds (this is a property of the weights we write, not of the code)
    with torch.no_grad():
        model.mel_head.bias[cfg.gpt.stop_mel_token] -= 2.0
    write_unified_voice(model, path)


def load_unified_voice(path: str | Path, cfg: IndexTTSConfig, cls: type = UnifiedVoice) -> UnifiedVoice:
    """Strict: every missing, unknown or mis-shaped key is named (upstream: strict=False, prints)."""
    obj, path = load_pickled(path, "gpt checkpoint")
    sd = expect_mapping(obj, path)
    if "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    sd = strip_prefix(sd)
    sd = {k: v for k, v in sd.items() if not k.startswith(LEGACY_PREFIXES) and not k.endswith(LEGACY_SUFFIXES)}
    model = cls(cfg)
    load_strict(model, sd, str(path))
    return model.eval()


def split_emo_rows(matrix: Tensor, emo_num: Sequence[int], path: str | Path) -> list[Tensor]:
    if matrix.ndim != 2 or matrix.shape[0] != sum(emo_num):
        raise CheckpointError(f"{path}: expected a [{sum(emo_num)}, dim] tensor (sum of emo_num rows), "
                              f"got {list(matrix.shape)}")
    return list(torch.split(matrix.float(), list(emo_num)))


def write_random_emo_matrices(cfg: IndexTTSConfig, root: str | Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = sum(cfg.emo_num)
    torch_save(torch.randn(n, cfg.style_dim, generator=g), Path(root) / cfg.spk_matrix)
    torch_save(torch.randn(n, cfg.gpt.model_dim, generator=g) * 0.02, Path(root) / cfg.emo_matrix)


def load_emo_matrices(spk_path: str | Path, emo_path: str | Path,
                      cfg: IndexTTSConfig) -> tuple[list[Tensor], list[Tensor]]:
    spk, spk_path = load_pickled(spk_path, "speaker style matrix (feat1.pt)")
    emo, emo_path = load_pickled(emo_path, "emotion matrix (feat2.pt)")
    for t, p, width in ((spk, spk_path, cfg.style_dim), (emo, emo_path, cfg.gpt.model_dim)):
        if not isinstance(t, Tensor):
            raise CheckpointError(f"{p}: expected a tensor, got {type(t).__name__}")
        if t.ndim != 2 or t.shape[1] != width:
            raise CheckpointError(f"{p}: expected [{sum(cfg.emo_num)}, {width}], got {list(t.shape)}")
    return split_emo_rows(spk, cfg.emo_num, spk_path), split_emo_rows(emo, cfg.emo_num, emo_path)
