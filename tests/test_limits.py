"""Every stage range covers every input the front end accepts, at tiny and at full size, and the
README's "Errors and limits" numbers are the code's.

- tiny: the longest accepted prompt (15 s, and a 60 s prompt that is cut to 15 s), the shortest
  (0.5 s), the longest segment (``max_text_tokens`` tokens), the most codes (``max_mel_tokens``)
  and the most beams go through the tiny engines end to end;
- full: the same requests go through the full-size pipeline with shape-only runners (no weights:
  each stage returns zeros of its spec's output shape), so every ``Pipeline.run`` range check and
  every buffer the runtime sizes is exercised at the released sizes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indextts_trt.runtime.demo_audio import synth_voice_prompt
from indextts_trt.runtime.indextts2.config import target_mel_length
from indextts_trt.runtime.options import RunOptions
from indextts_trt.runtime.sampling import SamplingOptions

README = Path(__file__).resolve().parent.parent / "README.md"


def _wav(path: Path, seconds: float, sr: int = 22050) -> Path:
    sf.write(path, synth_voice_prompt(seconds, sr, seed=5), sr)
    return path


def longest_segment_text(pipe, tokens: int) -> str:
    """A text that is one segment of exactly ``tokens`` tokens (no sentence end, no comma): words
    added while the count stays within ``tokens``, the last ones one token long. The search counts
    without the normalizer (slow, and these words pass it unchanged); the result is checked with it."""
    from indextts_trt.runtime.text import text_to_segments

    words: list[str] = []
    while True:
        for w in ("hello", "world", "a"):
            n = len(pipe.tokenizer.tokenize(" ".join(words + [w])))
            if n <= tokens:
                words.append(w)
                break
        else:
            pytest.fail(f"no text of exactly {tokens} tokens")
        if n == tokens:
            text = " ".join(words)
            segs = text_to_segments(text, pipe.normalizer, pipe.tokenizer, tokens, hard_limit=tokens)
            assert [len(s) for s in segs] == [tokens], [len(s) for s in segs]
            return text


def run_extremes(pipe, tmp: Path, prompt_s: float, emotion_s: float | None, beams: int, codes: int, text: str):
    opts = RunOptions(max_text_tokens_per_segment=pipe.cfg.gpt.max_text_tokens, diffusion_steps=1,
                      sampling=SamplingOptions(num_beams=beams, max_new_tokens=codes, min_new_tokens=codes))
    emo = None if emotion_s is None else _wav(tmp / "emo.wav", emotion_s, 16000)
    res = pipe.synthesize(text, _wav(tmp / "spk.wav", prompt_s), emotion_audio=emo, options=opts)
    assert [len(s.codes) for s in res.segments] == [codes]  # forced to exactly this many codes
    seg = res.segments[0]
    assert seg.mel.shape[-1] == target_mel_length(codes) and seg.wav.size == seg.mel.shape[-1] * pipe.cfg.hop_length
    return res


@pytest.mark.parametrize("prompt_s, emotion_s, beams, codes", [
    (15.0, 60.0, 8, None),  # the longest prompt, a cut emotion prompt, the most beams, codes and text
    (60.0, None, 3, 8),  # cut to 15 s by the loader
    (0.5, 0.5, 1, 8),  # the shortest prompts
], ids=["longest", "cut-60s", "shortest"])
def test_extreme_inputs_through_the_tiny_engines(ort_pipe, tmp_path, prompt_s, emotion_s, beams, codes):
    g = ort_pipe.cfg.gpt
    text = longest_segment_text(ort_pipe, g.max_text_tokens) if codes is None else "Hello there."
    res = run_extremes(ort_pipe, tmp_path, prompt_s, emotion_s, beams, codes or g.max_mel_tokens, text)
    assert np.isfinite(res.segments[0].mel).all()


# --------------------------------------------------------------------------- full size, shapes only


class ShapeRunner:
    """A stage that returns zeros of its spec's output shapes (views: no memory), for range checks;
    the runner protocol of ``runtime/runners.py`` (constants, feedback, a cache it makes)."""

    provider = "shapes"

    def __init__(self, spec):
        self.spec = spec
        self.dtypes = {t.name: t.np_dtype() for t in spec.inputs + spec.outputs}
        self.constants, self.fed = {}, {}

    def run(self, feed, cache=None, feedback=None, fetch=None):
        full = {**self.constants, **self.fed, **feed}
        if cache is not None:
            assert int(np.max(full[self.spec.cache.length])) < cache.capacity  # the new entries fit
            full.update((name, cache.part(j)) for j, name in enumerate(self.spec.cache.inputs))
        sizes = self.spec.sizes_of(full)
        self.spec.check_sizes(sizes)
        out = {t.name: np.broadcast_to(np.zeros((), t.np_dtype()), self.spec.shape(t, sizes)) for t in self.spec.outputs}
        for o, i in (feedback or {}).items():
            self.fed[i] = out[o]
        return out

    def set_constants(self, feed):
        self.constants = dict(feed)

    def clear_constants(self):
        self.constants, self.fed = {}, {}

    def new_cache(self, rows, capacity):
        spec = self.spec
        kv = spec.input(spec.cache.inputs[0])  # one part: (B, H, CAP, hd)

        class Cache:  # the KVCache operations on a zero-strided view: the shapes, no memory
            dtype = kv.np_dtype()

            def __init__(self):
                self.rows, self.capacity = rows, capacity

            @property
            def array(self):  # (parts, B, H, CAP, hd)
                part = spec.shape(kv, {"B": self.rows, "CAP": self.capacity})
                return np.broadcast_to(np.zeros((), self.dtype), (len(spec.cache.inputs), *part))

            def part(self, j):
                return self.array[j]

            def load_prefix(self, kv0):
                assert kv0.shape[4] <= self.capacity

            def write(self, new, positions):
                assert int(np.max(positions)) < self.capacity

            def reorder(self, rows_, src):
                pass

            def grow(self, cap):
                self.capacity = max(self.capacity, cap)

            def close(self):
                pass

        return Cache()

    def close(self):
        pass


@pytest.fixture(scope="module")
def full_shapes_dir(tiny_ckpt, tmp_path_factory):
    """An engines directory of the full-size config whose "graphs" are placeholders: the manifest
    is consistent (graph keys, hashes), so everything up to the runners is the real thing."""
    from safetensors.numpy import save_file

    from indextts_trt.runtime.config import write_yaml
    from indextts_trt.runtime.indextts2 import VARIANT

    d = tmp_path_factory.mktemp("full_shapes")
    write_yaml(VARIANT.config_dict("full"), d / "config.yaml")
    cfg = VARIANT.load_config(d / "config.yaml")
    shutil.copy(tiny_ckpt / "bpe.model", d / "bpe.model")  # only token counts matter here
    rows = sum(cfg.emo_num)
    save_file({"speed_rows": np.zeros((2, cfg.gpt.model_dim), np.float32),
               "spk_matrix": np.ones((rows, cfg.style_dim), np.float32),
               "emo_matrix": np.zeros((rows, cfg.gpt.model_dim), np.float32)}, str(d / "host_data.safetensors"))
    return _placeholder_graphs(d, VARIANT, cfg)


def _placeholder_graphs(d: Path, variant, cfg) -> Path:
    """Placeholder graph files and a consistent manifest for ``variant``'s stages at ``cfg``."""
    from indextts_trt.runtime.manifest import SCHEMA_VERSION

    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    stages = {}
    for name, spec in variant.stage_specs(cfg).items():
        (d / f"{name}.onnx").write_bytes(name.encode())
        stages[name] = {"onnx": f"{name}.onnx", "files": {f"{name}.onnx": sha(d / f"{name}.onnx")},
                        "graph_key": spec.graph_key(), "cache_key": name, "parity": {"passed": True}}
    (d / "manifest.json").write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "variant": variant.name, "stages": stages, "checkpoints": {},
        "host_files": {f: sha(d / f) for f in variant.host_files}}))
    return d


def _shape_pipeline(d: Path):
    import indextts_trt.runtime.pipeline as pl

    mp = pytest.MonkeyPatch()
    mp.setattr(pl, "open_runner", lambda backend, engine_dir, entry, spec, **kw: ShapeRunner(spec))
    with pl.open_pipeline(d) as pipe:
        yield pipe
    mp.undo()


@pytest.fixture(scope="module")
def full_pipe(full_shapes_dir):
    yield from _shape_pipeline(full_shapes_dir)


@pytest.fixture(scope="module")
def full_pipe_25(tiny_ckpt_25, tmp_path_factory):
    """IndexTTS-2.5's released config on shape-only runners. Its text table is the tiny
    tokenizer's (the vocabulary size shapes no range; token counts are what matter)."""
    from safetensors.numpy import save_file

    from indextts_trt.runtime.config import write_yaml
    from indextts_trt.runtime.indextts25 import VARIANT
    from indextts_trt.runtime.indextts25.layout import TOKENIZER_FILE

    d = tmp_path_factory.mktemp("full_shapes_25")
    data = VARIANT.config_dict("full")
    data["gpt"]["number_text_tokens"] = VARIANT.load_config(tiny_ckpt_25 / "config.yaml").gpt.number_text_tokens
    write_yaml(data, d / "config.yaml")
    cfg = VARIANT.load_config(d / "config.yaml")
    shutil.copy(tiny_ckpt_25 / TOKENIZER_FILE, d / TOKENIZER_FILE)
    rows = sum(cfg.emo_num)
    save_file({"spk_matrix": np.ones((rows, cfg.style_dim), np.float32),
               "emo_matrix": np.zeros((rows, cfg.gpt.model_dim), np.float32)}, str(d / "host_data.safetensors"))
    yield from _shape_pipeline(_placeholder_graphs(d, VARIANT, cfg))


@pytest.mark.parametrize("prompt_s, emotion_s, beams, codes", [
    (15.0, 60.0, 1, None),  # the longest prompt, text and codes (1 beam: the shapes do not depend on beams)
    (60.0, None, 8, 4),  # the most beams on a cut prompt
    (0.5, 0.5, 3, 4),  # the shortest prompts
], ids=["longest", "beams-cut-60s", "shortest"])
def test_full_size_ranges_cover_every_accepted_input(full_pipe, tmp_path, prompt_s, emotion_s, beams, codes):
    g = full_pipe.cfg.gpt
    assert (g.max_text_tokens, g.max_mel_tokens) == (600, 1815)  # the released configuration
    text = longest_segment_text(full_pipe, g.max_text_tokens) if codes is None else "Hello there."
    run_extremes(full_pipe, tmp_path, prompt_s, emotion_s, beams, codes or g.max_mel_tokens, text)


def _longest_25_text(pipe, opts) -> str:
    """The longest text of 1-token words that is still one 2.5 segment (bisection on the word count)."""
    lo, hi = 1, 2 * pipe.cfg.gpt.max_text_tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(pipe.text_segments(" ".join(["a"] * mid), opts)) == 1:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(["a"] * lo)


@pytest.mark.parametrize("prompt_s, emotion_s, beams, codes, factor", [
    (15.0, 60.0, 1, 1815, 1.0),  # the longest prompt, text and segment (the most mel frames)
    (15.0, None, 1, 1815, 2.0),  # the slowest factor: the code limit drops so the frames still fit
    (60.0, None, 8, 4, 0.5),  # the most beams, the fastest factor, a cut prompt
    (0.5, 0.5, 3, 4, 1.0),  # the shortest prompts
], ids=["longest", "slowest", "beams-fastest", "shortest"])
def test_full_size_25_ranges_cover_every_accepted_input(full_pipe_25, tmp_path, prompt_s, emotion_s, beams, codes,
                                                        factor):
    from indextts_trt.runtime.indextts25.config import max_codes_v25, target_mel_length_v25
    from indextts_trt.runtime.indextts25.options import RunOptions25

    pipe, g = full_pipe_25, full_pipe_25.cfg.gpt
    assert (g.max_text_tokens, g.max_mel_tokens) == (600, 1815)
    opts = RunOptions25(language="en", text_normalization=False, duration_factor=factor, diffusion_steps=1,
                        max_text_tokens_per_segment=g.max_text_tokens,
                        sampling=SamplingOptions(num_beams=beams, max_new_tokens=codes, min_new_tokens=codes))
    text = _longest_25_text(pipe, opts) if codes > 4 else "Hello there."
    if codes > 4:  # the prefill's text range is reached
        top = pipe.specs["gpt_prefill"].dim_map["L_text"].max
        assert top - 2 <= pipe.text_segments(text, opts)[0].ids.shape[1] <= top
    emo = None if emotion_s is None else _wav(tmp_path / "emo.wav", emotion_s, 16000)
    res = pipe.synthesize(text, _wav(tmp_path / "spk.wav", prompt_s), emotion_audio=emo, options=opts)
    n = max_codes_v25(pipe.cfg, codes, factor)
    assert [len(s.codes) for s in res.segments] == [n] and (factor < 2 or n == 907)
    assert res.segments[0].mel.shape[-1] == target_mel_length_v25(n, factor)


# --------------------------------------------------------------------------- the README's numbers


def _readme_rows() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("## Errors and limits"):]
    section = section[: section.index("\n## ", 4)]
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r"^\| ([^|]+) \|(.*)\|$", section, re.M)}


def test_readme_limits_are_the_codes():
    from indextts_trt.runtime.audio.io import MAX_PROMPT_SECONDS, MIN_PROMPT_SECONDS
    from indextts_trt.runtime.audio.limits import longest_prompt
    from indextts_trt.runtime.indextts2.config import full_config, tiny_config
    from indextts_trt.runtime.indextts2.stages import MAX_BEAMS
    from indextts_trt.runtime.options import DEFAULTS, MAX_CFG_RATE, MAX_DIFFUSION_STEPS, MAX_SILENCE_MS
    from indextts_trt.runtime.pipeline import MAX_THREADS
    from indextts_trt.runtime.voices import NAME_RULE

    full, tiny = full_config().gpt, tiny_config().gpt
    lp = longest_prompt(hop=full_config().hop_length)
    want = {
        "prompt length": [f"{MIN_PROMPT_SECONDS:g} s", f"{MAX_PROMPT_SECONDS:g} s"],
        "text tokens per segment": [str(DEFAULTS.max_text_tokens_per_segment), str(full.max_text_tokens),
                                    str(tiny.max_text_tokens)],
        "codes per segment": [str(SamplingOptions().max_new_tokens), str(full.max_mel_tokens), str(tiny.max_mel_tokens)],
        "mel frames per segment": [str(target_mel_length(full.max_mel_tokens))],
        "beams": [f"1–{MAX_BEAMS}"],
        "diffusion steps": [f"1–{MAX_DIFFUSION_STEPS}"],
        "CFG rate": [f"0–{MAX_CFG_RATE:g}"],
        "interval silence (API)": [f"0–{MAX_SILENCE_MS} ms"],
        "threads": [f"0–{MAX_THREADS}"],
        "saved-voice name": [NAME_RULE.split(" is ")[1].split(",")[0]],
        "stage ranges": [f"{lp.w2v} w2v-bert frames", f"{lp.fbank} fbank frames", f"{lp.mel} mel frames"],
    }
    from indextts_trt.runtime.indextts25.config import full_config_v25, max_codes_v25, max_segment_frames, \
        tiny_config_v25
    from indextts_trt.runtime.indextts25.options import (DEFAULTS25, MAX_DURATION_FACTOR, MIN_DURATION_FACTOR)
    from indextts_trt.runtime.text.multilingual import FRONTEND_LANGUAGES

    f25 = full_config_v25()
    want["language (IndexTTS-2.5)"] = [f"{DEFAULTS25.language} (default)", ", ".join(
        x for x in FRONTEND_LANGUAGES if x != DEFAULTS25.language)]
    want["duration factor (IndexTTS-2.5)"] = [f"{MIN_DURATION_FACTOR:g}–{MAX_DURATION_FACTOR:g}"]
    want["codes and mel frames per segment (IndexTTS-2.5)"] = [
        f"at most {max_segment_frames(f25)}", f"tiny: {max_segment_frames(tiny_config_v25())}",
        f"({max_codes_v25(f25, 10**6, MAX_DURATION_FACTOR)} at factor {MAX_DURATION_FACTOR:g})",
        f"below {SamplingOptions().max_new_tokens}"]
    # "above factor 1.21 the code limit drops below 1500": the default fits at 1.21, not above
    assert max_codes_v25(f25, 1500, 1.21) == 1500 > max_codes_v25(f25, 1500, 1.22)
    rows = _readme_rows()
    for key, numbers in want.items():
        assert key in rows, f"README 'Errors and limits' has no row {key!r}"
        for n in numbers:
            assert n in rows[key], f"README row {key!r} lacks {n!r}: {rows[key]}"
