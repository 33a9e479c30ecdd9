"""IndexTTS-2.5's stage sequence: IndexTTS-2's pipeline with what 2.5 changes overridden.

Inherited unchanged: the prompt front ends and their cache, the emotion mixing (audio, vector,
strength), the GPT's decode loop on the runtime-owned KV cache with the numpy beam sampler
(``generate_steps``), the CFM loop over the fused Euler ``dit_step``, BigVGAN, per-segment and
code-chunk streaming, saved voices (the same five tensors), joining. Overridden:
- text: the multilingual front end (language prefix, normalization on/off, Japanese segmentation)
  and the language row the prefill adds to every text position;
- speaker: the prompt condition regulates the raw w2v-bert features (no codec pass), and the GPT's
  3 conditioning rows come from the CAMPPlus vector (``speaker_projection``);
- content: ``codec_decode`` of the codes (25 → 50 Hz) instead of the latent pass + gpt_layer + vq2emb;
- the frame grid: ``int(2N · 1.72 · duration_factor)`` mel frames for N codes, for S2Mel and
  for the windows of code-chunk streaming, and the code limit that keeps a segment inside it
  (``segment_sampling``).
Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from ..indextts2.pipeline import Conditioning, IndexTTS2Pipeline, Request
from ..pipeline import timed
from ..sampling import SamplingOptions
from ..streaming import Grid
from ..text.frontend_v25 import TextFrontendV25
from ..text.ja_g2p import JapaneseSegmenter
from ..text.multilingual import MultilingualTokenizer, lang_to_token
from .config import max_codes_v25, target_mel_length_v25
from .layout import TOKENIZER_FILE
from .options import RunOptions25


@dataclass(frozen=True)
class GptText:
    """What the 2.5 prefill reads of a segment: its wrapped text ids and its language row."""

    ids: np.ndarray  # (1, L + 2) int64: [0, ids without 0/1, 1]
    lang: np.ndarray  # (1,) int64: the lang_embedding row


class IndexTTS25Pipeline(IndexTTS2Pipeline):
    voice_stages = ("semantic_encoder", "campplus", "length_regulator")

    def open_tokenizer(self) -> None:
        g = self.cfg.gpt
        self.tokenizer = MultilingualTokenizer(self.dir / TOKENIZER_FILE, g.number_text_tokens)
        ja = JapaneseSegmenter(g2p_ratio=0.0)  # MeCab is imported on the first Japanese text only
        self.frontends = {norm: TextFrontendV25(self.tokenizer, g.max_text_tokens + 2, normalize=norm,
                                                normalizer=self.normalizer, ja=ja) for norm in (True, False)}

    def host_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: v for k, v in super().host_shapes().items() if k != "speed_rows"}  # no speed rows in 2.5

    # ------------------------------------------------------------------ conditioning

    def prompt_content(self, spk: np.ndarray) -> np.ndarray:
        return spk  # 2.5 regulates the normalized w2v-bert features themselves

    def conds(self, c: Conditioning, emovec: np.ndarray) -> np.ndarray:
        return self.run("speaker_projection", style=c.style, emovec=emovec)["conds"]

    # ------------------------------------------------------------------ text and GPT

    def text_segments(self, text: str, options: RunOptions25) -> list[GptText]:
        lang = np.array([lang_to_token(options.language)], np.int64)
        segs = self.frontends[options.text_normalization].prepare(text, options.language,
                                                                  options.max_text_tokens_per_segment)
        return [GptText(self.text_inputs(s.ids)[0], lang) for s in segs]

    def segment_text(self, request: Request, i: int) -> tuple[GptText, None]:
        return request.segments[i], None  # no latent pass reads the text again

    def prefill(self, conds: np.ndarray, text: GptText, mel_ids: np.ndarray, mel_pos: np.ndarray) -> dict:
        """The generation prefill. The 2.5 graph places the start code at mel position 0 itself
        (nothing else is ever prefilled: 2.5 has no teacher-forced pass), so only that is accepted."""
        start = self.cfg.gpt.start_mel_token
        if mel_ids.tolist() != [[start]] or mel_pos.tolist() != [[0]]:
            raise ValueError(f"the IndexTTS-2.5 prefill takes the start code at position 0 only, got "
                             f"{mel_ids.tolist()} at {mel_pos.tolist()}")
        return self.run("gpt_prefill", conds=conds, text_ids=text.ids, lang_id=text.lang)

    def segment_sampling(self, options: RunOptions25, i: int) -> SamplingOptions:
        s = options.segment_sampling(i)  # at a slow duration factor, only the codes whose frames fit
        n = max_codes_v25(self.cfg, s.max_new_tokens, options.duration_factor)
        return s.replace(max_new_tokens=n, min_new_tokens=min(s.min_new_tokens, n))

    # ------------------------------------------------------------------ S2Mel

    def mel_grid(self, options: RunOptions25) -> Grid:
        return partial(target_mel_length_v25, duration_factor=options.duration_factor)

    def content(self, request: Request, text_lat, codes: np.ndarray, a: int, e: int, secs: dict) -> np.ndarray:
        """codes ``[a, e)`` → their 2(e − a) codec frames at 50 Hz (the codec sees only the window)."""
        with timed(secs, "codec_decode"):
            return self.run("codec_decode", codes=codes[None, a:e])["features"]


__all__ = ["IndexTTS25Pipeline", "GptText"]
