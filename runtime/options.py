"""What a synthesis request may ask for, with its defaults and its rules, written once.

The CLIs, the Python API, the PyTorch reference, the benchmarks and (later) the server read their
defaults from these frozen dataclasses and validate through them, so a rule or a default is
never restated. A broken rule is an :class:`OptionError` naming the field; front ends map the
field to their own spelling (``diffusion_steps`` → ``--diffusion-steps``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .audio.io import INTERVAL_SILENCE_MS
from .errors import OptionError
from .sampling import SamplingOptions

NUM_EMOTIONS = 8  # [happy, angry, sad, afraid, disgusted, melancholic, surprised, calm]
EMOTION_NAMES = ("happy", "angry", "sad", "afraid", "disgusted", "melancholic", "surprised", "calm")


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

        finite = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
        need(finite(self.emo_alpha) and 0.0 <= self.emo_alpha <= 1.0, "emo_alpha", "must be a number in [0, 1]")
        if self.emotion_vector is not None:
            v = self.emotion_vector
            need(not isinstance(v, (str, bytes)) and len(v) == NUM_EMOTIONS, "emotion_vector",
                 f"must have {NUM_EMOTIONS} weights [{', '.join(EMOTION_NAMES)}]")
            need(all(finite(w) and 0.0 <= w <= 1.0 for w in v), "emotion_vector", "weights must be numbers in [0, 1]")
            need(sum(v) <= 1.0 + 1e-6, "emotion_vector", "weights must sum to at most 1 (the rest is the speaker's "
                 "own emotion)")
        need(_int(self.max_text_tokens_per_segment) and self.max_text_tokens_per_segment >= 1,
             "max_text_tokens_per_segment", "must be an integer >= 1")
        need(_int(self.quick_streaming_tokens) and self.quick_streaming_tokens >= 0, "quick_streaming_tokens",
             "must be an integer >= 0")
        need(_int(self.diffusion_steps) and 1 <= self.diffusion_steps <= 1000, "diffusion_steps",
             "must be an integer in [1, 1000]")
        need(finite(self.cfg_rate) and 0.0 <= self.cfg_rate <= 10.0, "cfg_rate", "must be a number in [0, 10]")
        need(_int(self.seed) and 0 <= self.seed < 2**63, "seed", "must be an integer >= 0")
        need(_int(self.interval_silence_ms) and 0 <= self.interval_silence_ms <= 10_000, "interval_silence_ms",
             "must be an integer in [0, 10000]")
        if not isinstance(self.sampling, SamplingOptions):
            raise OptionError("sampling", self.sampling, "must be a SamplingOptions")
        self.sampling.validated()
        return self

    def segment_sampling(self, i: int) -> SamplingOptions:
        """Segment ``i``'s sampling options: its own seed unless the sampling options fix one."""
        return self.sampling if self.sampling.seed is not None else self.sampling.replace(seed=self.seed + i)

    def noise_seed(self, i: int) -> int:
        return self.seed + 1000 + i


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


DEFAULTS = RunOptions()

__all__ = ["RunOptions", "OptionError", "DEFAULTS", "NUM_EMOTIONS", "EMOTION_NAMES"]
