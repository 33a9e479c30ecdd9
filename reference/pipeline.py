"""The end-to-end PyTorch reference pipeline (upstream ``IndexTTS2.infer`` semantics, fp32, CPU).

text + speaker WAV (+ emotion WAV | 8-weight emotion vector, emo_alpha)
  → segments → conditioning → GPT codes → GPT latents → S2Mel → BigVGAN → 22.05 kHz int16.

It is the yardstick the exported graphs and the torch-free runtime are checked against, so it
stays close to upstream and simple; speed is not its job. The numpy front ends (text, audio,
sampler) are the runtime's own, shared rather than duplicated.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from indextts_trt.runtime.audio import (
    campplus_features,
    join_segments,
    load_emotion_prompt,
    load_prompt,
    mel_spectrogram,
    seamless_fbank,
)
from indextts_trt.runtime.cfm import cfm_noise
from indextts_trt.runtime.emotion import resolve_emotion
from indextts_trt.runtime.indextts2.config import IndexTTSConfig, target_mel_length
from indextts_trt.runtime.indextts2.layout import CheckpointLayout
from indextts_trt.runtime.options import DEFAULTS, RunOptions
from indextts_trt.runtime.results import Result, Segment
from indextts_trt.runtime.text import TextNormalizer, TextTokenizer, text_to_segments

from .generation import GenerationResult, generate_codes, latents as gpt_latents
from .loaders import MODELS
from .unified_voice import load_emo_matrices

log = logging.getLogger(__name__)


@dataclass
class SpeakerConditioning:
    """Everything computed once per speaker prompt (upstream caches the same tensors)."""

    spk_cond_emb: torch.Tensor  # (1, T50, semantic_dim) normalized w2v-bert layer features
    prompt_condition: torch.Tensor  # (1, T_ref, lr_channels) length-regulated S_ref
    ref_mel: torch.Tensor  # (1, n_mels, T_ref)
    style: torch.Tensor  # (1, style_dim) CAMPPlus vector
    # the features of the file loaded straight at 16 kHz: upstream's emotion input when no emotion
    # audio is given (it loads the speaker file again with librosa.load(sr=16000))
    emo_cond_emb: torch.Tensor


class ReferencePipeline:
    """Loads every model of a checkpoint directory once; synthesizes on CPU in fp32.

    A variant's reference pipeline subclasses this and overrides the per-request steps that differ
    (``open_text``, ``text_segments``, ``prompt_content``, ``conds``, ``generate``, ``mel_frames``,
    ``mel``); the request loop, the conditioning cache and the emotion mixing are shared."""

    variant_name = "indextts-2"
    layout_class = CheckpointLayout
    models = MODELS  # the variant's reference models by name (reference/loaders.py)

    def __init__(self, checkpoints: str | Path):
        lay = self.layout_class(Path(checkpoints))
        self.cfg = lay.check()
        cfg = self.cfg
        t0 = time.perf_counter()
        self.open_text(lay)
        self.gpt, self.w2v, self.codec, self.campplus, self.s2mel, self.bigvgan = (
            self.models[m].load(lay, cfg) for m in ("gpt", "w2v", "codec", "campplus", "s2mel", "bigvgan"))
        self.spk_matrix, self.emo_matrix = load_emo_matrices(lay.spk_matrix(cfg), lay.emo_matrix(cfg), cfg)
        self.load_seconds = time.perf_counter() - t0
        self._spk_cache: dict[tuple[str, float], SpeakerConditioning] = {}
        self._emo_cache: dict[tuple[str, float], torch.Tensor] = {}

    @property
    def variant(self):
        from indextts_trt.runtime.variant import get_variant

        return get_variant(self.variant_name)

    def open_text(self, lay) -> None:
        self.normalizer = TextNormalizer()
        self.normalizer.load_glossary_yaml(lay.root / "glossary.yaml")  # optional, as upstream
        self.tokenizer = TextTokenizer(lay.bpe_model())

    # ------------------------------------------------------------------ conditioning (cached)

    @torch.no_grad()
    def semantic_features(self, wav16k: np.ndarray) -> torch.Tensor:
        feats, mask = seamless_fbank(wav16k)
        x = torch.from_numpy(feats)[None]  # (1, T50, 160)
        m = torch.from_numpy(np.asarray(mask, dtype=bool))[None]
        return self.w2v(x, m)  # (1, T50, semantic_dim)

    def prompt_content(self, spk: torch.Tensor) -> torch.Tensor:
        """What the length regulator stretches to the prompt's mel: S_ref, the codec's quantized
        features (1, T50, semantic_dim)."""
        return self.codec.quantize(spk)[1]

    @torch.no_grad()
    def speaker(self, path: str | Path) -> SpeakerConditioning:
        key = (str(Path(path).resolve()), Path(path).stat().st_mtime if Path(path).exists() else 0.0)
        if key in self._spk_cache:
            return self._spk_cache[key]
        prompt = load_prompt(path)
        spk = self.semantic_features(prompt.wav16k)
        ref_mel = torch.from_numpy(mel_spectrogram(prompt.wav22k))[None]  # (1, n_mels, T_ref)
        style = self.campplus(torch.from_numpy(campplus_features(prompt.wav16k))[None])  # (1, style_dim)
        prompt_condition = self.s2mel.length_regulator(self.prompt_content(spk), ref_mel.shape[-1])
        cond = SpeakerConditioning(spk, prompt_condition, ref_mel, style, self.semantic_features(prompt.emo16k))
        self._spk_cache = {key: cond}  # upstream keeps only the last prompt
        return cond

    @torch.no_grad()
    def emotion(self, path: str | Path) -> torch.Tensor:
        key = (str(Path(path).resolve()), Path(path).stat().st_mtime if Path(path).exists() else 0.0)
        if key not in self._emo_cache:
            self._emo_cache = {key: self.semantic_features(load_emotion_prompt(path))}
        return self._emo_cache[key]

    # ------------------------------------------------------------------ the per-segment steps

    def text_segments(self, text: str, options: RunOptions) -> list[list[int]]:
        return text_to_segments(text, self.normalizer, self.tokenizer, options.max_text_tokens_per_segment,
                                options.quick_streaming_tokens, hard_limit=self.cfg.gpt.max_text_tokens)

    def conds(self, spk: SpeakerConditioning, emovec: torch.Tensor) -> torch.Tensor:
        return self.gpt.conds_latent(spk.spk_cond_emb, emovec)

    def generate(self, conds: torch.Tensor, ids: np.ndarray, options: RunOptions, sampling) -> GenerationResult:
        return generate_codes(self.gpt, conds, torch.from_numpy(ids), sampling, stop_token=self.cfg.gpt.stop_mel_token,
                              max_new_tokens=sampling.max_new_tokens)

    def mel_frames(self, num_codes: int, options: RunOptions) -> int:
        return target_mel_length(num_codes)

    def mel(self, conds: torch.Tensor, ids: np.ndarray, codes: np.ndarray, spk: SpeakerConditioning,
            options: RunOptions, noise: torch.Tensor, secs: dict) -> torch.Tensor:
        """The generated mel of a segment: the latent pass, then S2Mel (times in ``secs``)."""
        t = time.perf_counter()
        codes_t = torch.from_numpy(codes)[None]
        lat = gpt_latents(self.gpt, conds, torch.from_numpy(ids), codes_t[0])  # (1, N, model_dim)
        secs["gpt_latents"] = time.perf_counter() - t
        t = time.perf_counter()
        mel = self.s2mel.infer(lat, self.codec.vq2emb(codes_t), spk.prompt_condition, spk.ref_mel, spk.style,
                               n_steps=options.diffusion_steps, cfg_rate=options.cfg_rate, noise=noise)
        secs["s2mel"] = time.perf_counter() - t
        return mel

    # ------------------------------------------------------------------------------ synthesis

    def synthesize(self, text: str, speaker: str | Path, *, emotion_audio: str | Path | None = None,
                   options: RunOptions = DEFAULTS, progress: bool = False) -> Result:
        segs = list(self.iter_segments(text, speaker, emotion_audio=emotion_audio, options=options,
                                       progress=progress))
        seconds = defaultdict(float)
        for _, secs in segs:
            for k, v in secs.items():
                seconds[k] += v
        wav = join_segments([s.wav for s, _ in segs], options.interval_silence_ms, self.cfg.sample_rate)
        return Result(wav=wav, sample_rate=self.cfg.sample_rate, segments=[s for s, _ in segs], seconds=dict(seconds))

    @torch.no_grad()
    def iter_segments(self, text: str, speaker: str | Path, *, emotion_audio: str | Path | None = None,
                      options: RunOptions = DEFAULTS,
                      progress: bool = False) -> Iterator[tuple[Segment, dict[str, float]]]:
        cfg = self.cfg
        # the runtime's rules, shared: the variant's options class, then the request's
        options = self.variant.request_options(options).check_request(emotion_audio)
        t = time.perf_counter()
        segments = self.text_segments(text, options)
        secs = {"text": time.perf_counter() - t}

        t = time.perf_counter()
        spk = self.speaker(speaker)
        emo_alpha, emo_vector, emotion_audio = resolve_emotion(options.emo_alpha, options.emotion_vector,
                                                                emotion_audio)
        emo_emb = spk.emo_cond_emb if emotion_audio is None else self.emotion(emotion_audio)
        secs["conditioning"] = time.perf_counter() - t

        from tqdm import tqdm

        for i, ids in enumerate(tqdm(segments, desc="segments", unit="seg", disable=not progress)):
            seg_secs = dict(secs) if i == 0 else {}
            t = time.perf_counter()
            emovec = self.gpt.merge_emovec(spk.spk_cond_emb, emo_emb, emo_alpha)
            if emo_vector is not None:
                w = torch.tensor(emo_vector, dtype=torch.float32)
                emovec_mat = self.gpt.emo_vector_from_weights(w, spk.style, self.spk_matrix, self.emo_matrix)
                emovec = emovec_mat + (1 - w.sum()) * emovec
            conds = self.conds(spk, emovec)
            ids = np.asarray(ids, dtype=np.int64)
            gen = self.generate(conds, ids, options, options.segment_sampling(i))
            codes = np.asarray(gen.codes, dtype=np.int64)
            if len(codes) == 0:
                log.warning("segment %d: the GPT stopped before any code; skipping it", i)
                continue
            seg_secs["gpt_generate"] = time.perf_counter() - t

            t_total = spk.ref_mel.shape[-1] + self.mel_frames(len(codes), options)
            noise = torch.from_numpy(cfm_noise(options.noise_seed(i), cfg.n_mels, t_total))
            mel = self.mel(conds, ids, codes, spk, options, noise, seg_secs)

            t = time.perf_counter()
            wav = self.bigvgan(mel.float())[0, 0].numpy().astype(np.float32)
            seg_secs["bigvgan"] = time.perf_counter() - t
            yield Segment(codes, gen.hit_stop, mel.numpy(), wav), seg_secs
