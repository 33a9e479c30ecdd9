"""The end-to-end PyTorch reference for IndexTTS-2.5 (upstream ``infer_v2_5.IndexTTS2.infer``
semantics, fp32, CPU): the yardstick a 2.5 runtime will be gated against.

text, language + speaker WAV (+ emotion WAV | 8-weight vector)
  → 2.5 text front end → w2v-bert features, CAMPPlus style → emovec → 3-row conditioning
  → GPT codes (25 Hz) → codec.decode (50 Hz) → S2Mel at int(2N·1.72·duration_factor) frames
  → BigVGAN → 22.05 kHz int16.
It reuses 2.0's pipeline for everything the two share (audio front ends, caches, emotion
resolution, sampling seeds, joining); only model loading, the speaker path and the per-segment
steps differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from indextts_trt.runtime.audio import campplus_features, load_prompt, mel_spectrogram
from indextts_trt.runtime.indextts25.config import IndexTTS25Config, target_mel_length_v25
from indextts_trt.runtime.emotion import resolve_emotion
from indextts_trt.runtime.cfm import cfm_noise
from indextts_trt.runtime.indextts25.layout import CheckpointLayoutV25
from indextts_trt.runtime.text.frontend_v25 import TextFrontendV25
from indextts_trt.runtime.text.multilingual import MultilingualTokenizer, lang_to_token

from ..bigvgan import load_bigvgan
from ..campplus import load_campplus
from ..generation import generate_from_prefix
from indextts_trt.runtime.options import RunOptions
from indextts_trt.runtime.results import Segment

from ..pipeline import ReferencePipeline, SpeakerConditioning
from ..unified_voice import load_emo_matrices
from ..w2vbert import load_w2vbert
from .codec import load_codec
from .s2mel import load_s2mel_v25
from .unified_voice import load_unified_voice_v25

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SynthesisOptionsV25(RunOptions):
    language: str = "en"
    duration_factor: float = 1.0
    text_normalization: bool = True


class ReferencePipelineV25(ReferencePipeline):
    """Loads every model of a 2.5 checkpoint directory once; ``synthesize`` is 2.0's."""

    def __init__(self, checkpoints: str | Path):
        lay = CheckpointLayoutV25(Path(checkpoints))
        self.cfg: IndexTTS25Config = lay.check()
        cfg = self.cfg
        t0 = time.perf_counter()
        self.tokenizer = MultilingualTokenizer(lay.tokenizer(), cfg.gpt.number_text_tokens)
        glossary = lay.glossary() if lay.glossary().is_file() else None
        self.frontends = {norm: TextFrontendV25(self.tokenizer, cfg.gpt.max_text_tokens + 2, normalize=norm,
                                                glossary=glossary) for norm in (True, False)}
        self.gpt = load_unified_voice_v25(lay.gpt(cfg), cfg)
        self.spk_matrix, self.emo_matrix = load_emo_matrices(lay.spk_matrix(cfg), lay.emo_matrix(cfg), cfg)
        self.w2v = load_w2vbert(lay.w2v_bert_dir(), lay.w2v_stat(cfg), cfg)
        self.codec = load_codec(lay.codec(), cfg)
        self.campplus = load_campplus(lay.campplus(), cfg)
        self.s2mel = load_s2mel_v25(lay.s2mel(cfg), cfg)
        self.bigvgan = load_bigvgan(lay.bigvgan_dir(), cfg)
        self.load_seconds = time.perf_counter() - t0
        self._spk_cache: dict[tuple[str, float], SpeakerConditioning] = {}
        self._emo_cache: dict[tuple[str, float], torch.Tensor] = {}

    @torch.no_grad()
    def speaker(self, path: str | Path) -> SpeakerConditioning:
        """As 2.0, except that the prompt condition regulates the raw features (no codec quantize)."""
        key = (str(Path(path).resolve()), Path(path).stat().st_mtime if Path(path).exists() else 0.0)
        if key in self._spk_cache:
            return self._spk_cache[key]
        prompt = load_prompt(path)
        spk = self.semantic_features(prompt.wav16k)
        ref_mel = torch.from_numpy(mel_spectrogram(prompt.wav22k))[None]  # (1, n_mels, T_ref)
        style = self.campplus(torch.from_numpy(campplus_features(prompt.wav16k))[None])  # (1, style_dim)
        cond = SpeakerConditioning(spk, self.s2mel.prompt_condition(spk, ref_mel.shape[-1]), ref_mel, style,
                                   self.semantic_features(prompt.emo16k))  # as 2.0: the file again at 16 kHz
        self._spk_cache = {key: cond}
        return cond

    @torch.no_grad()
    def iter_segments(self, text: str, speaker: str | Path, *, emotion_audio: str | Path | None = None,
                      options: RunOptions = SynthesisOptionsV25(),
                      progress: bool = False) -> Iterator[tuple[Segment, dict[str, float]]]:
        cfg = self.cfg
        opts = options if isinstance(options, SynthesisOptionsV25) else SynthesisOptionsV25(**vars(options))
        t = time.perf_counter()
        fe = self.frontends[opts.text_normalization]
        segments = fe.prepare(text, opts.language, opts.max_text_tokens_per_segment)
        lang = lang_to_token(opts.language)
        secs = {"text": time.perf_counter() - t}

        t = time.perf_counter()
        spk = self.speaker(speaker)
        emo_alpha, emo_vector, emotion_audio = resolve_emotion(opts.emo_alpha, opts.emotion_vector, emotion_audio)
        emo_emb = spk.emo_cond_emb if emotion_audio is None else self.emotion(emotion_audio)
        secs["conditioning"] = time.perf_counter() - t

        from tqdm import tqdm

        for i, seg in enumerate(tqdm(segments, desc="segments", unit="seg", disable=not progress)):
            seg_secs = dict(secs) if i == 0 else {}
            t = time.perf_counter()
            emovec = self.gpt.merge_emovec(spk.spk_cond_emb, emo_emb, emo_alpha)
            if emo_vector is not None:
                w = torch.tensor(emo_vector, dtype=torch.float32)
                emovec_mat = self.gpt.emo_vector_from_weights(w, spk.style, self.spk_matrix, self.emo_matrix)
                emovec = emovec_mat + (1 - w.sum()) * emovec
            conds = self.gpt.conds_latent(spk.style, emovec)
            text_ids = np.asarray(seg.ids, dtype=np.int64)
            sampling = opts.segment_sampling(i)
            prefix = self.gpt.prompt(conds, torch.from_numpy(text_ids), lang)
            gen = generate_from_prefix(self.gpt, prefix, sampling, stop_token=cfg.gpt.stop_mel_token,
                                       max_new_tokens=sampling.max_new_tokens)
            codes = np.asarray(gen.codes, dtype=np.int64)
            if len(codes) == 0:
                log.warning("segment %d: the GPT stopped before any code; skipping it", i)
                continue
            seg_secs["gpt_generate"] = time.perf_counter() - t

            t = time.perf_counter()
            feat = self.codec.decode(torch.from_numpy(codes)[None])  # (1, 2N, semantic_dim)
            seg_secs["codec_decode"] = time.perf_counter() - t

            t = time.perf_counter()
            t_total = spk.ref_mel.shape[-1] + target_mel_length_v25(len(codes), opts.duration_factor)
            noise = torch.from_numpy(cfm_noise(opts.noise_seed(i), cfg.n_mels, t_total))
            mel = self.s2mel.infer(feat, spk.prompt_condition, spk.ref_mel, spk.style, opts.duration_factor,
                                   n_steps=opts.diffusion_steps, cfg_rate=opts.cfg_rate, noise=noise)
            seg_secs["s2mel"] = time.perf_counter() - t

            t = time.perf_counter()
            wav = self.bigvgan(mel.float())[0, 0].numpy().astype(np.float32)
            seg_secs["bigvgan"] = time.perf_counter() - t
            yield Segment(codes, gen.hit_stop, mel.numpy(), wav), seg_secs
