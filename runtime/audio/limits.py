"""The longest prompt the loaders accept, in samples and in every front end's frames.

Stage ranges are sized from these numbers, so any prompt the front end lets through fits every
graph: the limit is stated once (``MAX_PROMPT_SECONDS``) and the frame counts follow from the
loaders' own cut and resampling rules, not restated by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .features import fbank_frames, w2v_frames
from .io import MAX_PROMPT_SECONDS, SR_16K, SR_22K
from .mel import mel_frames
from .resample import sinc_length


@dataclass(frozen=True)
class PromptLimits:
    samples_22k: int  # the speaker prompt after the cut
    samples_16k: int  # the longer of the speaker's 16 kHz signal and a directly loaded emotion prompt
    fbank: int  # Kaldi frames (CAMPPlus input)
    w2v: int  # w2v-bert frames = semantic features (T50)
    mel: int  # reference mel frames (hop 256 at 22.05 kHz)


@functools.lru_cache(maxsize=4)
def longest_prompt(seconds: float = MAX_PROMPT_SECONDS, hop: int = 256) -> PromptLimits:
    n22 = int(seconds * SR_22K)  # the cut the loaders apply
    # the speaker's 16 kHz signal comes from the cut 22.05 kHz one (the sinc resampler's length
    # rule); an emotion prompt is cut at 16 kHz directly
    n16 = max(sinc_length(n22, SR_22K, SR_16K), int(seconds * SR_16K))
    return PromptLimits(n22, n16, fbank_frames(n16), w2v_frames(n16), mel_frames(n22, hop))


__all__ = ["PromptLimits", "longest_prompt"]
