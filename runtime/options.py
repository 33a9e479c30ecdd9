"""What a synthesis request may ask for, with its defaults and its rules, written once.

The CLIs, the Python API, the PyTorch reference, the benchmarks and (later) the server read their
defaults from these frozen dataclasses and validate through them, so a rule or a default is
never restated. A broken rule is an :class:`OptionError` naming the field; front ends map the
field to their own spelling (``diffusion_steps`` → ``--diffusion-steps``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .audio.io import INTERVAL_SILENCE_MS
from .errors import OptionError
from .numerics import is_int, is_number
from .sampling import SamplingOptions

NUM_EMOTIONS = 8  # [happy, angry, sad, afraid, disgusted, melancholic, surprised, calm]
EMOTION_NAMES = ("happy", "angry", "sad", "afraid", "disgusted", "melancholic", "surprised", "calm")
MAX_DIFFUSION_STEPS = 1000  # upstream uses 25; more is only slower
MAX_CFG_RATE = 10.0
MAX_SEED = 2**63  # numpy's generators take any integer; 63 bits keep seed + 1000 + i an int64
MAX_SILENCE_MS = 10_000


@dataclass(frozen=True)
class RunOptions:
    emo_alpha: float = 1.0  # emotion strength in [0, 1]
    emotion_vector: Sequence[float] | None = None  # 8 weights in [0, 1] summing to at most 1
    max_text_tokens_per_segment: int = 120  # upstream's default segment size
    quick_streaming_tokens: int = 0  # keep the first segment short (upstream's knob; 0: off)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    diffusion_steps: int = 25  # CFM Euler steps
    cfg_rate: float = 0.7  # classifier-free guidance: v = (1 + r)·v_cond − r·v_uncond
    seed: int = 0  # sampling (per segment: seed + i) and CFM noise (seed + 1000 + i)
    interval_silence_ms: int = INTERVAL_SILENCE_MS  # silence between segments

    def replace(self, **kw) -> RunOptions:
        return dataclasses.replace(self, **kw)

    def validated(self) -> RunOptions:
        """Raise :class:`OptionError` on the first broken rule; return ``self`` otherwise."""
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise OptionError(name, getattr(self, name), rule)

        need(is_number(self.emo_alpha) and 0.0 <= self.emo_alpha <= 1.0, "emo_alpha", "must be a number in [0, 1]")
        if self.emotion_vector is not None:
            v = _as_list(self.emotion_vector)
            need(v is not None and len(v) == NUM_EMOTIONS, "emotion_vector",
                 f"must have {NUM_EMOTIONS} weights [{', '.join(EMOTION_NAMES)}]")
            need(all(is_number(w) and 0.0 <= w <= 1.0 for w in v), "emotion_vector",
                 "weights must be numbers in [0, 1]")
            need(sum(v) <= 1.0 + 1e-6, "emotion_vector", "weights must sum to at most 1 (the rest is the speaker's "
                 "own emotion)")
        need(is_int(self.max_text_tokens_per_segment) and self.max_text_tokens_per_segment >= 1,
             "max_text_tokens_per_segment", "must be an integer >= 1")
        need(is_int(self.quick_streaming_tokens) and self.quick_streaming_tokens >= 0, "quick_streaming_tokens",
             "must be an integer >= 0")
        need(is_int(self.diffusion_steps) and 1 <= self.diffusion_steps <= MAX_DIFFUSION_STEPS, "diffusion_steps",
             f"must be an integer in [1, {MAX_DIFFUSION_STEPS}]")
        need(is_number(self.cfg_rate) and 0.0 <= self.cfg_rate <= MAX_CFG_RATE, "cfg_rate",
             f"must be a number in [0, {MAX_CFG_RATE:g}]")
        need(is_int(self.seed) and 0 <= self.seed < MAX_SEED, "seed", "must be an integer >= 0 (and < 2**63)")
        need(is_int(self.interval_silence_ms) and 0 <= self.interval_silence_ms <= MAX_SILENCE_MS,
             "interval_silence_ms", f"must be an integer in [0, {MAX_SILENCE_MS}]")
        if not isinstance(self.sampling, SamplingOptions):
            raise OptionError("sampling", self.sampling, "must be a SamplingOptions")
        self.sampling.validated()
        return self

    def check_request(self, emotion_audio) -> RunOptions:
        """The rules that join the options with the rest of a request (shared by every pipeline):
        the options' own rules, then the emotion inputs' — an emotion vector replaces an emotion
        audio upstream, so giving both is refused rather than one silently dropped, and an
        emotion strength other than 1 needs something to scale."""
        self.validated()
        if emotion_audio is not None and not isinstance(emotion_audio, (str, os.PathLike)):
            raise OptionError("emotion_audio", emotion_audio, "must be a path to an audio file")
        if emotion_audio is not None and self.emotion_vector is not None:
            raise OptionError("emotion_vector", self.emotion_vector, "give an emotion vector or an emotion audio, "
                              "not both (the vector would replace the audio)")
        if emotion_audio is None and self.emotion_vector is None and self.emo_alpha != 1.0:
            raise OptionError("emo_alpha", self.emo_alpha, "has no effect without an emotion audio or an emotion "
                              "vector")
        return self

    def segment_sampling(self, i: int) -> SamplingOptions:
        """Segment ``i``'s sampling options: its own seed unless the sampling options fix one."""
        return self.sampling if self.sampling.seed is not None else self.sampling.replace(seed=self.seed + i)

    def noise_seed(self, i: int) -> int:
        return self.seed + 1000 + i


def _as_list(v) -> list | None:
    """A flat sequence of values (list, tuple, 1-D array) as a list; None for anything else."""
    if isinstance(v, (str, bytes, dict)) or (isinstance(v, np.ndarray) and v.ndim != 1):
        return None
    try:
        return list(v)
    except TypeError:
        return None


DEFAULTS = RunOptions()

__all__ = ["RunOptions", "OptionError", "DEFAULTS", "NUM_EMOTIONS", "EMOTION_NAMES",
           "MAX_DIFFUSION_STEPS", "MAX_CFG_RATE", "MAX_SEED", "MAX_SILENCE_MS"]
