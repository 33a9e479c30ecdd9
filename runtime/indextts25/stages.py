"""The stage specs of IndexTTS-2.5 (torch-free), in pipeline order.

The stages 2.5 shares with IndexTTS-2 are built by IndexTTS-2's spec builders with 2.5's sizes
(same tensors, tolerances and range rules); new or changed (docs/indextts-2.5.md §8):
- ``speaker_projection``: CAMPPlus style + emovec → the 3 conditioning rows [proj(style) + emovec, 0, 0];
- ``gpt_prefill``: [3 rows ; text + text positions + the language row ; start code at mel position 0]
  → last logits + KV cache (no latent pass in 2.5, so no mel inputs and no hidden states);
- ``gpt_decode``: IndexTTS-2's step, the cache offset by 3 conditioning rows instead of 34;
- ``codec_decode``: 25 Hz codes → 50 Hz features (2N frames), EnhancedCodec.decode.
Gone: semantic_codec, vq2emb, speaker_conditioning, gpt_layer (and the latent pass).

Ranges. A segment has at most ``max_segment_frames`` mel frames (``max_mel_tokens`` codes at
duration factor 1: 6 243 frames, 72.5 s, at full size), so the DiT sees up to 1 291 + 6 243 frames
and BigVGAN 6 243. A slower factor lowers the segment's code limit before generation
(``max_codes_v25``) instead of widening the ranges: sized for upstream's slider maximum 2.0, the
DiT's maximum would be 13 778 frames, 12 GB of attention scores per request at full size.
"""

from __future__ import annotations

from ..audio.limits import longest_prompt
from ..indextts2.stages import (
    F32,
    I64,
    FEATURES_INT8,
    LOGITS_INT8,
    MAX_FP32,
    _dim,
    bigvgan_spec,
    campplus_spec,
    dit_step_spec,
    emotion_conditioning_spec,
    gpt_decode_spec,
    length_regulator_spec,
    prompt_dim,
    semantic_encoder_spec,
)
from ..spec import StageSpec, TensorSpec
from ..text.multilingual import NUM_LANGUAGE_ROWS
from .config import CODEC_UPSAMPLE, CONDITIONING_ROWS, IndexTTS25Config, max_segment_frames


def stage_specs(cfg: IndexTTS25Config) -> dict[str, StageSpec]:
    g = cfg.gpt
    d, ds = g.model_dim, cfg.semantic_dim
    heads, hd, layers = g.heads, g.model_dim // g.heads, g.layers
    conds = CONDITIONING_ROWS
    max_codes = g.max_mel_tokens + 2  # mel positions: [start, c1..cN, stop]
    max_text = g.max_text_tokens + 2
    prompt = longest_prompt(hop=cfg.hop_length)
    gen_frames = max_segment_frames(cfg)  # the most one segment makes
    t50 = prompt_dim(prompt)
    specs = [
        semantic_encoder_spec(cfg, t50),
        campplus_spec(cfg, prompt),
        emotion_conditioning_spec(cfg, t50),
        StageSpec(
            "speaker_projection", "spk_emb_proj(CAMPPlus style) + emovec, then two zero rows → GPT conditioning",
            inputs=(TensorSpec("style", F32, (1, cfg.style_dim)), TensorSpec("emovec", F32, (1, d))),
            outputs=(TensorSpec("conds", F32, (1, conds, d)),), dims=(), tolerances={"conds": MAX_FP32}),
        StageSpec(
            "gpt_prefill", "GPT over [conditioning ; text + language row ; start code]: last-position logits "
            "and the KV cache",
            # batch 1, as IndexTTS-2's: the runtime copies the prefilled cache into every beam row
            inputs=(TensorSpec("conds", F32, (1, conds, d)),
                    TensorSpec("text_ids", I64, (1, "L_text"), 0, g.number_text_tokens + 1),
                    TensorSpec("lang_id", I64, (1,), 0, NUM_LANGUAGE_ROWS)),
            outputs=(TensorSpec("logits", F32, (1, g.number_mel_codes)),
                     TensorSpec("kv", F32, (layers, 2, 1, heads, "S", hd), reduced=True)),
            dims=(_dim("L_text", 3, 40, max_text), _dim("S", conds + 4, conds + 41, conds + max_text + 1)),
            derived={"S": f"{conds} + L_text + 1"},
            tolerances={"logits": LOGITS_INT8, "kv": FEATURES_INT8}),  # int8: IndexTTS-2's prefill's
        gpt_decode_spec(cfg, conds, max_text, max_codes),
        StageSpec(
            "codec_decode", "EnhancedCodec.decode: codebook rows → Vocos decoder → nearest ×2 → conv (25 → 50 Hz)",
            inputs=(TensorSpec("codes", I64, (1, "N"), 0, cfg.semantic_codec.codebook_size),),
            outputs=(TensorSpec("features", F32, (1, "T2", ds)),),
            dims=(_dim("N", 1, 100, g.max_mel_tokens), _dim("T2", 2, 200, CODEC_UPSAMPLE * g.max_mel_tokens)),
            derived={"T2": f"{CODEC_UPSAMPLE} * N"}, tolerances={"features": MAX_FP32}),
        # T_in: the prompt's raw w2v-bert frames (its condition) or a segment's 2N codec frames
        length_regulator_spec(cfg, max(CODEC_UPSAMPLE * g.max_mel_tokens, prompt.w2v), max(prompt.mel, gen_frames)),
        dit_step_spec(cfg, prompt.mel + gen_frames),
        bigvgan_spec(cfg, gen_frames),
    ]
    return {s.name: s for s in specs}


__all__ = ["stage_specs"]
