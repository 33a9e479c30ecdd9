"""The torch-free pipeline: a thin sequencer over the stage graphs in an engines directory.

conditioning (cached per prompt) → per segment: emovec, GPT prefill, decode steps on the in-place
KV cache with the numpy beam sampler, latent pass (the prefill graph), S2Mel projections, the
25-step CFM loop with CFG, BigVGAN → segments joined with 200 ms of silence, as upstream.
Every stage is checked against its profile before it runs; a request beyond a range names both
numbers. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import (
    SR_22K,
    campplus_features,
    join_segments,
    load_emotion_prompt,
    load_prompt,
    mel_spectrogram,
    seamless_fbank,
)
from .config import IndexTTSConfig, load_config, max_new_codes, target_mel_length
from .emotion import resolve_emotion
from .ort_backend import BackendError, OrtStage
from .sampling import BeamSearch, SamplingOptions
from .stages import STAGE_ORDER, stage_specs
from .streaming import ChunkPlan, Crossfader
from .text import TextNormalizer, TextTokenizer, text_to_segments

log = logging.getLogger(__name__)
SAMPLE_RATE = SR_22K


def cfm_noise(seed: int, n_mels: int, frames: int) -> np.ndarray:
    """The CFM's initial noise, drawn with numpy so the reference and the runtime share it. Drawn
    frame-major so a longer draw extends a shorter one: frame f gets the same noise whatever the
    total length, which code-chunk streaming relies on."""
    return np.random.default_rng(seed).standard_normal((frames, n_mels)).astype(np.float32).T[None].copy()


def nearest_index(t_in: int, t_out: int) -> np.ndarray:
    """PyTorch legacy 'nearest' source index in float32 arithmetic: floor(dst · (T_in / T_out))."""
    scale = np.float32(t_in) / np.float32(t_out)
    idx = np.floor(np.arange(t_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, t_in - 1)


class EngineError(RuntimeError):
    pass


@dataclass
class Conditioning:
    spk: np.ndarray  # (1, T50, semantic_dim)
    prompt_condition: np.ndarray  # (1, T_ref, C)
    ref_mel: np.ndarray  # (1, n_mels, T_ref)
    style: np.ndarray  # (1, style_dim)


@dataclass(frozen=True)
class RunOptions:
    emo_alpha: float = 1.0
    emotion_vector: Sequence[float] | None = None
    max_text_tokens_per_segment: int = 120
    quick_streaming_tokens: int = 0
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    diffusion_steps: int = 25
    cfg_rate: float = 0.7
    seed: int = 0
    interval_silence_ms: int = 200


@dataclass
class Segment:
    codes: np.ndarray
    hit_stop: bool
    mel: np.ndarray
    wav: np.ndarray


@dataclass
class Result:
    wav: np.ndarray  # int16
    sample_rate: int
    segments: list[Segment]
    seconds: dict[str, float]

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate


def choose_backend(engine_dir: str | Path, manifest: dict, requested: str = "auto") -> tuple[str, str]:
    """('trt' | 'ort', why). ``auto`` takes TensorRT when every stage has an engine that this
    machine's TensorRT and GPU can run, else ONNX Runtime; ``trt`` insists (EngineError saying why
    not and how to rebuild)."""
    if requested not in ("auto", "trt", "ort"):
        raise EngineError(f"unknown backend {requested!r}: use auto, trt or ort")
    if requested == "ort":
        return "ort", "requested"
    missing = [n for n in STAGE_ORDER if not (manifest["stages"].get(n) or {}).get("trt")]
    problem = None
    if missing:
        which = "no TensorRT engines" if len(missing) == len(STAGE_ORDER) else \
            f"no TensorRT engine for {', '.join(missing)}"
        problem = (f"{which} in {engine_dir}: build them with `tts-export build --precision fp16 --out "
                   f"{engine_dir}` on the GPU machine")
    else:
        from indextts_trt.export.trt_build import TensorRTUnavailable, gpu_info, import_tensorrt
        from indextts_trt.export.trt_plan import engine_compat_error

        try:
            trt = import_tensorrt()
            gpu, cc = gpu_info()
            errs = [e for n in STAGE_ORDER
                    if (e := engine_compat_error(manifest["stages"][n]["trt"], trt.__version__, gpu, cc, engine_dir))]
            problem = errs[0] if errs else None
        except TensorRTUnavailable as e:
            problem = f"TensorRT cannot run here: {e}"
    if problem is None:
        return "trt", "engines match this TensorRT and GPU"
    if requested == "trt":
        raise EngineError(problem)
    return "ort", problem


class OnnxPipeline:
    """The pipeline over an engines directory; ``backend='ort'`` runs the ONNX graphs with ONNX
    Runtime, ``'trt'`` the TensorRT engines built from them (same sequencing, same buffers' plan)."""

    def __init__(self, engine_dir: str | Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 backend: str = "ort"):
        from indextts_trt.export.manifest import ManifestError, load_manifest  # stdlib-only module

        self.dir = Path(engine_dir)
        try:
            self.manifest = load_manifest(self.dir)
        except ManifestError as e:
            raise EngineError(str(e)) from None
        self.cfg: IndexTTSConfig = load_config(self.dir / "config.yaml")
        self.specs = stage_specs(self.cfg)
        missing = [s for s in STAGE_ORDER if s not in self.manifest["stages"]]
        if missing:
            raise EngineError(f"{self.dir} lacks stage(s) {', '.join(missing)}: run `tts-export build --out {self.dir}`")
        for name in STAGE_ORDER:
            st = self.manifest["stages"][name]
            if st["spec_hash"] != self.specs[name].spec_hash():
                raise EngineError(f"stage {name} in {self.dir} was built for another spec (hash {st['spec_hash']} vs "
                                  f"{self.specs[name].spec_hash()} from its config.yaml): rebuild with tts-export build")
            if not st["parity"]["passed"]:
                raise EngineError(f"stage {name} in {self.dir} did not pass parity; rebuild it")
        self.providers, self.threads = providers, threads
        self.backend, self.backend_reason = choose_backend(self.dir, self.manifest, backend)
        self.plan = None
        if self.backend == "trt":
            from indextts_trt.export.trt_plan import load_plan

            self.plan = load_plan(self.dir)
        self._stages: dict[str, OrtStage] = {}
        from safetensors.numpy import load_file

        self.host = load_file(str(self.dir / "host_data.safetensors"))
        self.normalizer = TextNormalizer()
        self.tokenizer = TextTokenizer(self.dir / "bpe.model")
        self._cache: dict[tuple[str, float], Conditioning] = {}

    def stage(self, name: str) -> OrtStage:
        if name not in self._stages:
            entry = self.manifest["stages"][name]
            if self.backend == "trt":
                from .trt_backend import TrtStage

                self._stages[name] = TrtStage(self.dir / entry["trt"]["engine"], self.specs[name],
                                              self.plan["stages"][name])
            else:
                self._stages[name] = OrtStage(self.dir / entry["onnx"], self.specs[name], self.providers,
                                              self.threads)
        return self._stages[name]

    def run(self, name: str, sizes: dict[str, int], **feed: np.ndarray) -> dict[str, np.ndarray]:
        self.specs[name].check_sizes(sizes)
        return self.stage(name).run(feed)

    # ------------------------------------------------------------------ conditioning

    def semantic(self, wav16k: np.ndarray) -> np.ndarray:
        feats, mask = seamless_fbank(wav16k)
        t = feats.shape[0]
        return self.run("semantic_encoder", {"T50": t}, input_features=feats[None],
                        attention_mask=mask[None].astype(np.int64))["semantic_features"]

    def speaker(self, path: str | Path | Conditioning) -> Conditioning:
        if isinstance(path, Conditioning):
            return path
        p = Path(path)
        key = (str(p.resolve()), p.stat().st_mtime if p.exists() else 0.0)
        if key in self._cache:
            return self._cache[key]
        prompt = load_prompt(p)
        spk = self.semantic(prompt.wav16k)
        t50 = spk.shape[1]
        quant = self.run("semantic_codec", {"T50": t50}, semantic_features=spk)["quantized"]
        ref_mel = mel_spectrogram(prompt.wav22k)[None]
        fb = campplus_features(prompt.wav16k)
        style = self.run("campplus", {"T_fbank": fb.shape[0]}, fbank=fb[None])["style"]
        t_ref = ref_mel.shape[-1]
        pc = self.run("length_regulator", {"T_in": t50, "T_out": t_ref}, content=quant,
                      src_index=nearest_index(t50, t_ref))["cond"]
        cond = Conditioning(spk, pc, ref_mel, style)
        self._cache = {key: cond}
        return cond

    def save_voice(self, voices_dir: str | Path, name: str, speaker: str | Path) -> Conditioning:
        from .voices import engines_fingerprint, save_voice

        c = self.speaker(speaker)
        save_voice(voices_dir, name, {"spk": c.spk, "prompt_condition": c.prompt_condition, "ref_mel": c.ref_mel,
                                      "style": c.style}, engines_fingerprint(self.manifest), str(speaker))
        return c

    def load_voice(self, voices_dir: str | Path, name: str) -> Conditioning:
        from .voices import engines_fingerprint, load_voice

        t = load_voice(voices_dir, name, engines_fingerprint(self.manifest))
        return Conditioning(t["spk"], t["prompt_condition"], t["ref_mel"], t["style"])

    def emovec(self, emb: np.ndarray) -> np.ndarray:
        return self.run("emotion_conditioning", {"T50": emb.shape[1]}, semantic_features=emb)["emovec"]

    def emo_vector_from_weights(self, w: np.ndarray, style: np.ndarray) -> np.ndarray:
        rows, start = [], 0
        spk_m, emo_m = self.host["spk_matrix"], self.host["emo_matrix"]
        for n in self.cfg.emo_num:
            group = spk_m[start:start + n]
            cos = group @ style[0] / np.maximum(np.linalg.norm(group, axis=1) * np.linalg.norm(style[0]), 1e-8)
            rows.append(emo_m[start + int(np.argmax(cos))])
            start += n
        return (np.asarray(w, np.float32)[:, None] * np.stack(rows)).sum(0, keepdims=True)

    # ------------------------------------------------------------------ GPT

    def prefill(self, conds: np.ndarray, text: np.ndarray, mel_ids: np.ndarray, mel_pos: np.ndarray) -> dict:
        c = self.cfg.gpt.condition_num_latent + 2
        sizes = {"L_text": text.shape[1], "M": mel_ids.shape[1],
                 "S": c + text.shape[1] + mel_ids.shape[1]}
        return self.run("gpt_prefill", sizes, conds=conds, text_ids=text, mel_ids=mel_ids, mel_pos=mel_pos)

    def generate(self, conds: np.ndarray, text: np.ndarray, opts: SamplingOptions) -> tuple[np.ndarray, bool]:
        for search in self.generate_steps(conds, text, opts):
            pass
        return search.finalize(), search.hit_stop

    def generate_steps(self, conds: np.ndarray, text: np.ndarray, opts: SamplingOptions):
        """Yields the beam search after every sampling step (its ``committed()`` codes are final);
        the last one yielded is done."""
        g = self.cfg.gpt
        start = g.start_mel_token
        opts = opts.replace(max_new_tokens=max_new_codes(self.cfg, opts.max_new_tokens))
        out = self.prefill(conds, text, np.array([[start]], np.int64), np.zeros((1, 1), np.int64))
        kv0, logits = out["kv"], out["logits"]
        s = kv0.shape[4]
        search = BeamSearch(opts, np.array([1] * (s - 1) + [start]), logits.shape[-1], g.stop_mel_token,
                            suppress_tokens=(start,))
        nb = search.num_beams
        cap = s + opts.max_new_tokens + 1
        self.specs["gpt_decode"].check_sizes({"B": nb, "CAP": cap})
        # fixed-capacity cache, allocated once per segment; the decode graph writes into it in place
        kv = np.zeros((*kv0.shape[:2], nb, kv0.shape[3], cap, kv0.shape[5]), np.float32)
        kv[..., :s, :] = kv0
        dec = self.stage("gpt_decode")
        cache = dec.new_cache(kv)
        rows = np.repeat(logits, nb, axis=0)
        k = 0
        while True:
            tokens, beam_index = search.step(rows)
            k += 1
            yield search
            if search.done:
                break
            changed = np.nonzero(beam_index != np.arange(nb))[0]
            if changed.size:  # copy only the rows whose beam changed, not the whole cache
                cache.reorder(changed, beam_index[changed])
            res = dec.run({"mel_ids": tokens[:, None], "mel_pos": np.full((nb, 1), k + 1, np.int64),
                           "cache_len": np.array([s + k - 1], np.int64)}, bound=cache.bound)
            rows = res["logits"]

    def latents(self, conds: np.ndarray, text: np.ndarray, codes: np.ndarray) -> np.ndarray:
        g = self.cfg.gpt
        mel = np.concatenate([[g.start_mel_token], codes, [g.stop_mel_token]]).astype(np.int64)[None]
        hidden = self.prefill(conds, text, mel, np.arange(mel.shape[1], dtype=np.int64)[None])["hidden"]
        return hidden[:, -mel.shape[1]:-2]

    # ------------------------------------------------------------------ S2Mel + vocoder

    def s2mel(self, latent: np.ndarray, codes: np.ndarray, c: Conditioning, steps: int, cfg_rate: float,
              noise_seed: int, frame_offset: int = 0, frames: int | None = None) -> np.ndarray:
        """Mel for ``codes``: ``target_mel_length(N)`` frames unless ``frames`` says otherwise.
        Code-chunk streaming passes a window's slice of the segment's frame grid (``frames``, from
        ``frame_offset``) and so gets the noise the whole segment would have at those frames."""
        n = codes.shape[0]
        proj = self.run("gpt_layer", {"N": n}, latent=latent)["projected"]
        emb = self.run("vq2emb", {"N": n}, codes=codes[None])["embedding"]
        t_gen = target_mel_length(n) if frames is None else frames
        cond = self.run("length_regulator", {"T_in": n, "T_out": t_gen}, content=emb + proj,
                        src_index=nearest_index(n, t_gen))["cond"]
        mu = np.concatenate([c.prompt_condition, cond], axis=1)
        T, t_ref = mu.shape[1], c.ref_mel.shape[-1]
        x = cfm_noise(noise_seed, self.cfg.n_mels, T + frame_offset)
        if frame_offset:
            x = np.concatenate([x[..., :t_ref], x[..., t_ref + frame_offset:]], axis=-1)
        prompt_x = np.zeros_like(x)
        prompt_x[..., :t_ref] = c.ref_mel
        x[..., :t_ref] = 0
        # the CFG batch [cond; uncond] is built once; only x and t change per step
        px2 = np.concatenate([prompt_x, np.zeros_like(prompt_x)])
        st2 = np.concatenate([c.style, np.zeros_like(c.style)])
        mu2 = np.concatenate([mu, np.zeros_like(mu)])
        lens = np.full(2, T, np.int64)
        t_span = np.linspace(0, 1, steps + 1, dtype=np.float32)
        t = t_span[0]
        self.specs["dit_step"].check_sizes({"B2": 2, "T": T})
        dit = self.stage("dit_step")
        for i in range(1, steps + 1):
            dt = t_span[i] - t_span[i - 1]
            v = dit.run({"x": np.concatenate([x, x]), "prompt_x": px2, "x_lens": lens,
                         "t": np.full(2, t, np.float32), "style": st2, "cond": mu2})["velocity"]
            v = (1.0 + cfg_rate) * v[:1] - cfg_rate * v[1:]
            x = x + dt * v
            t = t + dt
            x[..., :t_ref] = 0
        return x[..., t_ref:]

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        t = mel.shape[-1]
        return self.run("bigvgan", {"T_mel": t, "T_wav": t * self.cfg.hop_length}, mel=mel)["wav"][0, 0]

    # ------------------------------------------------------------------ the whole request

    def synthesize(self, text: str, speaker: str | Path | Conditioning, *, emotion_audio: str | Path | None = None,
                   options: RunOptions = RunOptions(), progress: bool = False) -> Result:
        secs: dict[str, float] = defaultdict(float)
        out = list(self.iter_segments(text, speaker, emotion_audio, options, progress, secs))
        return Result(join_segments([s.wav for s in out], options.interval_silence_ms), SAMPLE_RATE, out, dict(secs))

    def stream(self, text: str, speaker: str | Path | Conditioning, *, emotion_audio: str | Path | None = None,
               options: RunOptions = RunOptions(), chunk: ChunkPlan | None = None, seconds: dict | None = None):
        """Yields int16 audio chunks as soon as they exist; segments are separated by the same
        silence as ``synthesize``.

        ``chunk=None``: per-segment streaming, one chunk per segment; the concatenation equals
        ``synthesize(...).wav`` exactly. ``options.quick_streaming_tokens`` keeps the first segment
        short (upstream's knob).
        ``chunk=ChunkPlan(100, 20)``: code-chunk streaming within a segment (see ``streaming.py``):
        audio starts after ``chunk_codes`` committed codes instead of after the whole segment; the
        codes are the non-streamed ones, the audio an approximation of it (exact with one window).
        """
        from .audio import to_int16

        secs = seconds if seconds is not None else defaultdict(float)
        sil = np.zeros(int(SAMPLE_RATE * options.interval_silence_ms / 1000.0), np.int16)
        segments, c, conds = self._prepare(text, speaker, emotion_audio, options, secs)
        emitted = False
        for i, ids in enumerate(segments):
            parts = (self._segment_chunks(i, ids, c, conds, options, chunk, secs) if chunk is not None
                     else (seg.wav for seg in self._segment(i, ids, c, conds, options, secs)))
            first = True
            for wav in parts:
                if first and emitted and sil.size:
                    yield sil
                first, emitted = False, True
                if wav.size:
                    yield to_int16(wav)

    def iter_segments(self, text, speaker, emotion_audio, options: RunOptions, progress: bool, secs: dict):
        segments, c, conds = self._prepare(text, speaker, emotion_audio, options, secs)
        from tqdm import tqdm

        for i, ids in enumerate(tqdm(segments, desc="segments", unit="seg", disable=not progress)):
            yield from self._segment(i, ids, c, conds, options, secs)

    def _prepare(self, text, speaker, emotion_audio, options: RunOptions, secs: dict):
        """Text segments, the speaker's conditioning and the GPT conditioning rows (emotion mixed in)."""
        t0 = time.perf_counter()
        segments = text_to_segments(text, self.normalizer, self.tokenizer, options.max_text_tokens_per_segment,
                                    options.quick_streaming_tokens)
        secs["text"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        c = self.speaker(speaker)
        alpha, vec, emotion_audio = resolve_emotion(options.emo_alpha, options.emotion_vector, emotion_audio)
        emo = c.spk if emotion_audio is None else self.semantic(load_emotion_prompt(emotion_audio))
        base = self.emovec(c.spk)
        emovec = base if emo is c.spk else base + alpha * (self.emovec(emo) - base)
        if vec is not None:
            w = np.asarray(vec, np.float32)
            emovec = self.emo_vector_from_weights(w, c.style) + (1 - w.sum()) * emovec
        lat = self.run("speaker_conditioning", {"T50": c.spk.shape[1]}, semantic_features=c.spk)["latents"]
        conds = np.concatenate([lat + emovec[:, None, :], self.host["speed_rows"][None]], axis=1).astype(np.float32)
        secs["conditioning"] += time.perf_counter() - t0
        return segments, c, conds

    @staticmethod
    def _texts(ids) -> tuple[np.ndarray, np.ndarray]:
        """The prefill strips ids 0/1 before adding its own; the latent pass does not (upstream)."""
        ids = np.asarray(ids, np.int64)
        stripped = ids[(ids != 0) & (ids != 1)]
        return (np.concatenate([[0], stripped, [1]]).astype(np.int64)[None],
                np.concatenate([[0], ids, [1]]).astype(np.int64)[None])

    def _sampling(self, options: RunOptions, i: int) -> SamplingOptions:
        return options.sampling if options.sampling.seed is not None else options.sampling.replace(seed=options.seed + i)

    def _segment(self, i, ids, c: Conditioning, conds, options: RunOptions, secs: dict):
        text_gen, text_lat = self._texts(ids)
        t0 = time.perf_counter()
        codes, hit = self.generate(conds, text_gen, self._sampling(options, i))
        secs["gpt_generate"] += time.perf_counter() - t0
        if len(codes) == 0:
            log.warning("segment %d: the GPT stopped before any code; skipping it", i)
            return
        t0 = time.perf_counter()
        latent = self.latents(conds, text_lat, codes)
        secs["gpt_latents"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        mel = self.s2mel(latent, codes, c, options.diffusion_steps, options.cfg_rate, options.seed + 1000 + i)
        secs["s2mel"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        wav = self.vocode(mel)
        secs["bigvgan"] += time.perf_counter() - t0
        yield Segment(codes, hit, mel, wav)

    def _segment_chunks(self, i, ids, c: Conditioning, conds, options: RunOptions, plan: ChunkPlan, secs: dict):
        """Float audio pieces of one segment, synthesized window by window while codes are generated."""
        text_gen, text_lat = self._texts(ids)
        fader, hop = Crossfader(), self.cfg.hop_length
        done = 0  # codes already synthesized; windows are fixed multiples of chunk_codes, so the
        # audio depends only on the final codes, never on when the beams happened to agree

        def window(codes: np.ndarray, start: int, end: int) -> np.ndarray:
            a, e = plan.window(start, end)
            f0, f1 = plan.frames(a, e)
            t0 = time.perf_counter()
            lat = self.latents(conds, text_lat, codes[:e])[:, a:e]
            secs["gpt_latents"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            mel = self.s2mel(lat, codes[a:e], c, options.diffusion_steps, options.cfg_rate, options.seed + 1000 + i,
                             frame_offset=f0, frames=f1 - f0)
            secs["s2mel"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            wav = self.vocode(mel)
            secs["bigvgan"] += time.perf_counter() - t0
            return wav

        t0 = time.perf_counter()
        for search in self.generate_steps(conds, text_gen, self._sampling(options, i)):
            if search.done:
                break
            while search.committed_length() - done >= plan.chunk_codes:
                secs["gpt_generate"] += time.perf_counter() - t0
                end = done + plan.chunk_codes
                yield fader.push(window(search.committed(), done, end), plan.held_back(end, hop))
                done += plan.chunk_codes
                t0 = time.perf_counter()
        codes = search.finalize()
        secs["gpt_generate"] += time.perf_counter() - t0
        if len(codes) == 0:
            log.warning("segment %d: the GPT stopped before any code; skipping it", i)
            return
        if done < len(codes):
            yield fader.push(window(codes, done, len(codes)), 0)
        yield fader.flush()


__all__ = ["OnnxPipeline", "RunOptions", "Result", "EngineError", "BackendError", "cfm_noise", "nearest_index", "ChunkPlan",
           "choose_backend"]
