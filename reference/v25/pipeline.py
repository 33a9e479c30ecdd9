"""The end-to-end PyTorch reference for IndexTTS-2.5 (upstream ``infer_v2_5.IndexTTS2.infer``
semantics, fp32, CPU): the yardstick the 2.5 graphs and runtime are gated against.

text, language + speaker WAV (+ emotion WAV | 8-weight vector)
  → 2.5 text front end → w2v-bert features, CAMPPlus style → emovec → 3-row conditioning
  → GPT codes (25 Hz) → codec.decode (50 Hz) → S2Mel at int(2N·1.72·duration_factor) frames
  → BigVGAN → 22.05 kHz int16.
IndexTTS-2's reference pipeline with the steps 2.5 changes overridden; the request loop, audio
front ends, conditioning cache, emotion mixing, seeds and joining are shared.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from indextts_trt.runtime.indextts25.config import max_codes_v25, target_mel_length_v25
from indextts_trt.runtime.indextts25.layout import CheckpointLayoutV25
from indextts_trt.runtime.indextts25.options import RunOptions25
from indextts_trt.runtime.text.frontend_v25 import TextFrontendV25
from indextts_trt.runtime.text.ja_g2p import JapaneseSegmenter
from indextts_trt.runtime.text.multilingual import MultilingualTokenizer, lang_to_token
from indextts_trt.runtime.text.normalize import TextNormalizer

from ..generation import GenerationResult, generate_from_prefix
from ..pipeline import ReferencePipeline, SpeakerConditioning
from .loaders import MODELS


class ReferencePipelineV25(ReferencePipeline):
    variant_name = "indextts-2.5"
    layout_class = CheckpointLayoutV25
    models = MODELS

    def open_text(self, lay: CheckpointLayoutV25) -> None:
        g = self.cfg.gpt
        self.tokenizer = MultilingualTokenizer(lay.tokenizer(), g.number_text_tokens)
        self.normalizer = TextNormalizer()
        self.normalizer.load_glossary_yaml(lay.glossary())  # optional, as upstream
        ja = JapaneseSegmenter(g2p_ratio=0.0)
        self.frontends = {norm: TextFrontendV25(self.tokenizer, g.max_text_tokens + 2, normalize=norm,
                                                normalizer=self.normalizer, ja=ja) for norm in (True, False)}

    def prompt_content(self, spk: torch.Tensor) -> torch.Tensor:
        return spk  # the raw normalized w2v-bert features (no codec pass on the prompt in 2.5)

    def text_segments(self, text: str, options: RunOptions25) -> list[list[int]]:
        fe = self.frontends[options.text_normalization]
        return [s.ids for s in fe.prepare(text, options.language, options.max_text_tokens_per_segment)]

    def conds(self, spk: SpeakerConditioning, emovec: torch.Tensor) -> torch.Tensor:
        return self.gpt.conds_latent(spk.style, emovec)

    def generate(self, conds: torch.Tensor, ids: np.ndarray, options: RunOptions25, sampling) -> GenerationResult:
        prefix = self.gpt.prompt(conds, torch.from_numpy(ids), lang_to_token(options.language))
        return generate_from_prefix(self.gpt, prefix, sampling, stop_token=self.cfg.gpt.stop_mel_token,
                                    max_new_tokens=max_codes_v25(self.cfg, sampling.max_new_tokens,
                                                                 options.duration_factor))

    def mel_frames(self, num_codes: int, options: RunOptions25) -> int:
        return target_mel_length_v25(num_codes, options.duration_factor)

    def mel(self, conds, ids, codes: np.ndarray, spk: SpeakerConditioning, options: RunOptions25,
            noise: torch.Tensor, secs: dict) -> torch.Tensor:
        t = time.perf_counter()
        feat = self.codec.decode(torch.from_numpy(codes)[None])  # (1, 2N, semantic_dim)
        secs["codec_decode"] = time.perf_counter() - t
        t = time.perf_counter()
        mel = self.s2mel.infer(feat, spk.prompt_condition, spk.ref_mel, spk.style, options.duration_factor,
                               n_steps=options.diffusion_steps, cfg_rate=options.cfg_rate, noise=noise)
        secs["s2mel"] = time.perf_counter() - t
        return mel


__all__ = ["ReferencePipelineV25"]
