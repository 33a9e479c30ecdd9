"""IndexTTS-2's stage sequence over the generic pipeline.

conditioning (cached per prompt) → per segment: emovec, GPT prefill, decode steps on the in-place
KV cache with the numpy beam sampler, latent pass (the prefill graph), S2Mel projections, the CFM
loop with CFG, BigVGAN → segments joined with the interval silence, as upstream. Every stage is
checked against its ranges before it runs (``Pipeline.run``). Nothing here imports torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import campplus_features, load_emotion_prompt, load_prompt, mel_spectrogram, seamless_fbank
from ..cfm import cfm_noise, solve_euler
from ..kvcache import FIRST_EXTRA, next_capacity
from ..emotion import apply_vector, mix_emovec, preset_emovec, resolve_emotion
from ..errors import OptionError
from ..numerics import nearest_index
from ..options import RunOptions
from ..pipeline import EngineError, Pipeline, timed
from ..results import Segment
from ..sampling import BeamSearch, SamplingOptions
from ..streaming import ChunkPlan, Crossfader, Grid
from ..text import TextNormalizer, TextTokenizer, text_to_segments
from ..workdirs import rebuild_hint
from .config import max_new_codes, target_mel_length
from .stages import MAX_BEAMS


@dataclass
class Conditioning:
    """Everything computed once per speaker prompt (upstream caches the same tensors)."""

    spk: np.ndarray  # (1, T50, semantic_dim) normalized w2v-bert features
    prompt_condition: np.ndarray  # (1, T_ref, C) length-regulated quantized features
    ref_mel: np.ndarray  # (1, n_mels, T_ref)
    style: np.ndarray  # (1, style_dim) CAMPPlus vector
    # (1, T50e, semantic_dim): the same features of the file loaded straight at 16 kHz, upstream's
    # emotion input when no emotion audio is given (it loads the speaker file again for that)
    emo_spk: np.ndarray


@dataclass
class GenerationStart:
    search: BeamSearch  # before its first step
    kv0: np.ndarray  # (L, 2, 1, H, S, hd) the prefill's cache
    logits: np.ndarray  # (1, V) the last prompt position's
    prompt_len: int  # S: cached positions before the first code
    limit: int  # the most cache positions this segment can need


@dataclass
class Request:
    segments: list  # per segment, what segment_text reads (IndexTTS-2: its text token ids)
    c: Conditioning
    conds: np.ndarray  # (1, num_latent + 2, D): the GPT's conditioning rows, emotion mixed in


class IndexTTS2Pipeline(Pipeline):
    voice_stages = ("semantic_encoder", "semantic_codec", "campplus", "length_regulator")

    def __init__(self, engine_dir: str | Path, **kw):
        super().__init__(engine_dir, **kw)
        self.sample_rate = self.cfg.sample_rate
        self.host = self._load_host_data(self.dir / "host_data.safetensors")
        self.normalizer = TextNormalizer()
        self.normalizer.load_glossary_yaml(self.dir / "glossary.yaml")  # optional, copied by the build
        self.open_tokenizer()
        self._cache: dict[tuple[str, float], Conditioning] = {}

    def open_tokenizer(self) -> None:
        self.tokenizer = TextTokenizer(self.dir / "bpe.model")

    def host_shapes(self) -> dict[str, tuple[int, ...]]:
        """The tensors of host_data.safetensors and their shapes (float32)."""
        g, rows = self.cfg.gpt, sum(self.cfg.emo_num)
        return {"speed_rows": (2, g.model_dim), "spk_matrix": (rows, self.cfg.style_dim),
                "emo_matrix": (rows, g.model_dim)}

    def _load_host_data(self, path: Path) -> dict[str, np.ndarray]:
        """The host tensors, each checked by name and shape (the manifest's hash was checked first)."""
        from safetensors.numpy import load_file

        want = self.host_shapes()
        try:
            host = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for a damaged file
            raise EngineError(f"{path} is truncated or corrupt ({e}): {rebuild_hint(self.dir, self.manifest)}") \
                from None
        for name, shape in want.items():
            if name not in host or host[name].shape != shape or host[name].dtype != np.float32:
                got = "missing" if name not in host else f"{host[name].dtype} {host[name].shape}"
                raise EngineError(f"{path}: tensor {name} is {got}, expected float32 {shape}: "
                                  f"{rebuild_hint(self.dir, self.manifest)}")
        return host

    # ------------------------------------------------------------------ conditioning

    def semantic(self, wav16k: np.ndarray) -> np.ndarray:
        feats, mask = seamless_fbank(wav16k)
        return self.run("semantic_encoder", input_features=feats[None],
                        attention_mask=mask[None].astype(np.int64))["semantic_features"]

    def speaker(self, path: str | Path | Conditioning) -> Conditioning:
        if isinstance(path, Conditioning):
            return path
        if not isinstance(path, (str, os.PathLike)):
            raise OptionError("speaker", path, "must be a path to an audio file or a saved voice (load_voice)")
        p = Path(path)
        key = (str(p.resolve()), p.stat().st_mtime if p.exists() else 0.0)
        if key in self._cache:
            return self._cache[key]
        prompt = load_prompt(p)
        spk = self.semantic(prompt.wav16k)
        content = self.prompt_content(spk)
        ref_mel = mel_spectrogram(prompt.wav22k)[None]
        style = self.run("campplus", fbank=campplus_features(prompt.wav16k)[None])["style"]
        pc = self.run("length_regulator", content=content,
                      src_index=nearest_index(content.shape[1], ref_mel.shape[-1]))["cond"]
        cond = Conditioning(spk, pc, ref_mel, style, self.semantic(prompt.emo16k))
        self._cache = {key: cond}  # upstream keeps only the last prompt
        return cond

    def prompt_content(self, spk: np.ndarray) -> np.ndarray:
        """What the length regulator stretches to the prompt's mel: the codec's quantized features."""
        return self.run("semantic_codec", semantic_features=spk)["quantized"]

    def voice_tensors(self, speaker) -> dict[str, np.ndarray]:
        c = self.speaker(speaker)
        return {"spk": c.spk, "prompt_condition": c.prompt_condition, "ref_mel": c.ref_mel, "style": c.style,
                "emo_spk": c.emo_spk}

    def voice_from_tensors(self, t: dict[str, np.ndarray]) -> Conditioning:
        """A saved voice's tensors, checked by name, dtype and shape against the stages that read
        them, so a damaged voice is a VoiceError naming the tensor, not a broadcast error later."""
        from ..voices import check_voice_tensors

        c = self.cfg
        t50, t_ref = self.specs["semantic_encoder"].dim_map["T50"], self.specs["length_regulator"].dim_map["T_out"]
        check_voice_tensors(t, {"spk": (1, t50, c.semantic_dim), "emo_spk": (1, t50, c.semantic_dim),
                                "prompt_condition": (1, t_ref, c.s2mel.length_regulator.channels),
                                "ref_mel": (1, c.n_mels, t_ref), "style": (1, c.style_dim)})
        return Conditioning(t["spk"], t["prompt_condition"], t["ref_mel"], t["style"], t["emo_spk"])

    def emovec(self, emb: np.ndarray) -> np.ndarray:
        return self.run("emotion_conditioning", semantic_features=emb)["emovec"]

    def gpt_conditioning(self, c: Conditioning, emotion_audio, options: RunOptions) -> np.ndarray:
        """(1, num_latent + 2, D): speaker latents + the emovec (emotion audio or vector mixed in
        as upstream), then the two speed rows."""
        alpha, vec, emotion_audio = resolve_emotion(options.emo_alpha, options.emotion_vector, emotion_audio)
        emo = c.emo_spk if emotion_audio is None else self.semantic(load_emotion_prompt(emotion_audio))
        emovec = mix_emovec(self.emovec(c.spk), self.emovec(emo), alpha)  # alpha is 1 without emotion audio
        if vec is not None:
            emovec = apply_vector(emovec, vec, preset_emovec(vec, c.style, self.host["spk_matrix"],
                                                             self.host["emo_matrix"], self.cfg.emo_num))
        return self.conds(c, emovec)

    def conds(self, c: Conditioning, emovec: np.ndarray) -> np.ndarray:
        """The GPT's conditioning rows for this speaker and emotion vector (1, D)."""
        lat = self.run("speaker_conditioning", semantic_features=c.spk)["latents"]
        return np.concatenate([lat + emovec[:, None, :], self.host["speed_rows"][None]], axis=1).astype(np.float32)

    # ------------------------------------------------------------------ GPT

    def prefill(self, conds: np.ndarray, text: np.ndarray, mel_ids: np.ndarray, mel_pos: np.ndarray) -> dict:
        return self.run("gpt_prefill", conds=conds, text_ids=text, mel_ids=mel_ids, mel_pos=mel_pos)

    def generate(self, conds: np.ndarray, text: np.ndarray, opts: SamplingOptions) -> tuple[np.ndarray, bool]:
        for search in self.generate_steps(conds, text, opts):
            pass
        return search.finalize(), search.hit_stop

    def generate_steps(self, conds: np.ndarray, text: np.ndarray, opts: SamplingOptions):
        """Yields the beam search after every sampling step (its ``committed()`` codes are final);
        the last one yielded is done."""
        st = self.generation_start(conds, text, opts)
        search, s, nb = st.search, st.prompt_len, st.search.num_beams
        # the cache grows with the codes (kvcache.next_capacity): a step attends to about as many
        # positions as exist, not to the longest segment the limits allow
        cache = self.stage("gpt_decode").new_cache(nb, next_capacity(min(s + FIRST_EXTRA, st.limit), s + 1, st.limit))
        cache.load_prefix(st.kv0)
        try:
            rows = np.repeat(st.logits, nb, axis=0)
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
                feed = self.decode_inputs(tokens, k, s)
                need = int(feed["cache_len"][0]) + 1
                if need > cache.capacity:
                    cache.grow(next_capacity(need, cache.capacity, st.limit))
                rows = self.run("gpt_decode", cache=cache, **feed)["logits"]
        finally:
            cache.close()

    def generation_start(self, conds: np.ndarray, text: np.ndarray, opts: SamplingOptions) -> GenerationStart:
        """A segment's prefill and its beam search, before the first decode step (shared by the
        loop above and the serving batcher, ``batched.py``)."""
        g = self.cfg.gpt
        start = g.start_mel_token
        opts = opts.replace(max_new_tokens=max_new_codes(self.cfg, opts.max_new_tokens))
        out = self.prefill(conds, text, np.array([[start]], np.int64), np.zeros((1, 1), np.int64))
        kv0, logits = out["kv"], out["logits"]
        s = kv0.shape[4]
        search = BeamSearch(opts, np.array([1] * (s - 1) + [start]), logits.shape[-1], g.stop_mel_token,
                            suppress_tokens=(start,))
        spec = self.specs["gpt_decode"]
        spec.check_sizes({"B": search.num_beams, "CAP": s + opts.max_new_tokens + 1})
        return GenerationStart(search, kv0, logits, s, min(s + opts.max_new_tokens + 1, spec.dim_map["CAP"].max))

    @staticmethod
    def decode_inputs(tokens: np.ndarray, k: int, prompt_len: int) -> dict[str, np.ndarray]:
        """The decode step after ``k`` sampled codes: each row's token, its mel position (k + 1,
        upstream's HF path) and its valid cache positions (this step's entry goes at that index)."""
        nb = tokens.shape[0]
        return {"mel_ids": tokens[:, None], "mel_pos": np.full((nb, 1), k + 1, np.int64),
                "cache_len": np.full(nb, prompt_len + k - 1, np.int64)}

    def latents(self, conds: np.ndarray, text: np.ndarray, codes: np.ndarray) -> np.ndarray:
        g = self.cfg.gpt
        mel = np.concatenate([[g.start_mel_token], codes, [g.stop_mel_token]]).astype(np.int64)[None]
        hidden = self.prefill(conds, text, mel, np.arange(mel.shape[1], dtype=np.int64)[None])["hidden"]
        return hidden[:, -mel.shape[1]:-2]

    # ------------------------------------------------------------------ S2Mel + vocoder

    def mel_grid(self, options: RunOptions) -> Grid:
        """Mel frames of a segment's first N codes (the frame grid S2Mel and code-chunk streaming use)."""
        return target_mel_length

    def content(self, request: Request, text_lat, codes: np.ndarray, a: int, e: int, secs: dict) -> np.ndarray:
        """S2Mel's content features of codes ``[a, e)`` (codes ``[:e]`` are their history): the
        GPT latents (a causal pass, so a prefix's latents are the full run's) through gpt_layer,
        plus the codes' codec embedding."""
        with timed(secs, "gpt_latents"):
            lat = self.latents(request.conds, text_lat, codes[:e])[:, a:e]
        with timed(secs, "s2mel"):
            proj = self.run("gpt_layer", latent=lat)["projected"]
            return self.run("vq2emb", codes=codes[None, a:e])["embedding"] + proj

    def s2mel(self, content: np.ndarray, c: Conditioning, options: RunOptions, noise_seed: int, frames: int,
              frame_offset: int = 0) -> np.ndarray:
        """Mel of ``frames`` frames for ``content``. Code-chunk streaming passes a window's slice of
        the segment's frame grid (``frames``, from ``frame_offset``) and so gets the noise the whole
        segment would have at those frames."""
        x, const = self.s2mel_inputs(content, c, options, noise_seed, frames, frame_offset)
        # the step's constant inputs are bound once per segment (on the device for TensorRT)
        step = self.stage("dit_step")
        step.set_constants(const)
        try:
            mel = solve_euler(lambda feed, fetch: step.run(feed, feedback={"x_next": "x"}, fetch=fetch), x,
                              const["prompt_len"], options.diffusion_steps)
        finally:
            step.clear_constants()
        return mel[..., c.ref_mel.shape[-1]:]

    def s2mel_inputs(self, content: np.ndarray, c: Conditioning, options: RunOptions, noise_seed: int, frames: int,
                     frame_offset: int = 0):
        """(x, constants): the CFM's initial noise (1, n_mels, T) and the DiT step's other inputs,
        checked against its ranges (shared by :meth:`s2mel` and the serving batcher)."""
        cond = self.run("length_regulator", content=content,
                        src_index=nearest_index(content.shape[1], frames))["cond"]
        mu = np.concatenate([c.prompt_condition, cond], axis=1)
        T, t_ref = mu.shape[1], c.ref_mel.shape[-1]
        x = cfm_noise(noise_seed, self.cfg.n_mels, T + frame_offset)
        if frame_offset:
            x = np.concatenate([x[..., :t_ref], x[..., t_ref + frame_offset:]], axis=-1)
        prompt_x = np.zeros_like(x)
        prompt_x[..., :t_ref] = c.ref_mel
        const = {"prompt_x": prompt_x, "x_lens": np.array([T], np.int64), "prompt_len": np.array([t_ref], np.int64),
                 "style": c.style, "cond": mu, "cfg_rate": np.array([options.cfg_rate], np.float32)}
        spec = self.specs["dit_step"]
        spec.check_sizes(spec.sizes_of({**const, "x": x}))
        return x, const

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        return self.run("bigvgan", mel=mel)["wav"][0, 0]

    # ------------------------------------------------------------------ the request

    def prepare(self, text: str, speaker, emotion_audio, options: RunOptions, secs: dict) -> Request:
        rows = self.specs["gpt_decode"].dim_map["B"].max
        if options.sampling.num_beams > min(MAX_BEAMS, rows):
            raise OptionError("num_beams", options.sampling.num_beams,
                              f"must be in [1, {min(MAX_BEAMS, rows)}] (beams of one request)")
        with timed(secs, "text"):
            segments = self.text_segments(text, options)
        with timed(secs, "conditioning"):
            c = self.speaker(speaker)
            conds = self.gpt_conditioning(c, emotion_audio, options)
        return Request(segments, c, conds)

    def text_segments(self, text: str, options: RunOptions) -> list:
        """The request's text → its segments, each what :meth:`segment_text` reads."""
        return text_to_segments(text, self.normalizer, self.tokenizer, options.max_text_tokens_per_segment,
                                options.quick_streaming_tokens, hard_limit=self.cfg.gpt.max_text_tokens)

    def segment_text(self, request: Request, i: int):
        """(the text the GPT generates from, the text :meth:`content` reads) of segment ``i``."""
        return self.text_inputs(request.segments[i])

    @staticmethod
    def text_inputs(ids) -> tuple[np.ndarray, np.ndarray]:
        """(generation text, latent-pass text): the prefill strips ids 0/1 before adding its own
        bounds; the latent pass does not (upstream)."""
        ids = np.asarray(ids, np.int64)
        stripped = ids[(ids != 0) & (ids != 1)]
        return (np.concatenate([[0], stripped, [1]]).astype(np.int64)[None],
                np.concatenate([[0], ids, [1]]).astype(np.int64)[None])

    def segment_sampling(self, options: RunOptions, i: int) -> SamplingOptions:
        """Segment ``i``'s sampling options (a variant may lower its code limit)."""
        return options.segment_sampling(i)

    def segment(self, request: Request, i: int, options: RunOptions, secs: dict) -> Segment | None:
        text_gen, text_lat = self.segment_text(request, i)
        with timed(secs, "gpt_generate"):
            codes, hit = self.generate(request.conds, text_gen, self.segment_sampling(options, i))
        if len(codes) == 0:
            return None
        content = self.content(request, text_lat, codes, 0, len(codes), secs)
        with timed(secs, "s2mel"):
            mel = self.s2mel(content, request.c, options, options.noise_seed(i), self.mel_grid(options)(len(codes)))
        with timed(secs, "bigvgan"):
            wav = self.vocode(mel)
        return Segment(codes, hit, mel, wav)

    def segment_chunks(self, request: Request, i: int, options: RunOptions, plan: ChunkPlan, secs: dict):
        text_gen, text_lat = self.segment_text(request, i)
        fader, hop, grid = Crossfader(), self.cfg.hop_length, self.mel_grid(options)
        done = 0  # codes already synthesized; windows are fixed multiples of chunk_codes, so the
        # audio depends only on the final codes, never on when the beams happened to agree

        def window(codes: np.ndarray, start: int, end: int) -> np.ndarray:
            a, e = plan.window(start, end)
            f0, f1 = plan.frames(a, e, grid)
            content = self.content(request, text_lat, codes, a, e, secs)
            with timed(secs, "s2mel"):
                mel = self.s2mel(content, request.c, options, options.noise_seed(i), f1 - f0, frame_offset=f0)
            with timed(secs, "bigvgan"):
                return self.vocode(mel)

        t0 = time.perf_counter()
        for search in self.generate_steps(request.conds, text_gen, self.segment_sampling(options, i)):
            if search.done:
                break
            while search.committed_length() - done >= plan.chunk_codes:
                secs["gpt_generate"] += time.perf_counter() - t0
                end = done + plan.chunk_codes
                yield fader.push(window(search.committed(), done, end), plan.held_back(end, hop, grid))
                done += plan.chunk_codes
                t0 = time.perf_counter()
        codes = search.finalize()
        secs["gpt_generate"] += time.perf_counter() - t0
        if len(codes) == 0:
            return
        if done < len(codes):
            yield fader.push(window(codes, done, len(codes)), 0)
        yield fader.flush()


    def batched_request(self, text: str, speaker, emotion_audio, options: RunOptions, chunk: ChunkPlan | None):
        """This request as steps the serving batcher interleaves with other requests'
        (``runtime/batching.py``); the audio is what :meth:`stream` yields."""
        from .batched import request_steps

        return request_steps(self, text, speaker, emotion_audio, options, chunk)


__all__ = ["IndexTTS2Pipeline", "Conditioning", "Request", "GenerationStart"]
