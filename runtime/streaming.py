"""Code-chunk streaming: audio while the GPT is still generating codes.

The GPT emits codes one step at a time, but with beam search a code is only *final* once every
hypothesis that can still win agrees on it (``BeamSearch.committed_length``). Every
``chunk_codes`` committed codes, a window of codes ``[start - overlap_codes, end)`` goes through
the latent pass (causal, so its latents for a prefix are exactly those of the full run), S2Mel and
BigVGAN; consecutive windows' audio overlaps by ``overlap_codes`` codes and is joined with a
raised-cosine (Hann) crossfade, as the upstream TensorRT peer's ``StreamingDecoder`` does
(chunk 100, overlap 20).

What this gives and what it cannot (stated, and tested):
- the codes are exactly the non-streamed codes, beams included: nothing is emitted before it is
  committed;
- with ``chunk_codes`` ≥ the segment's codes there is one window and the audio is bit-identical to
  non-streamed synthesis;
- otherwise the audio is an approximation: the length regulator (GroupNorm, convolutions) and the
  DiT (global attention) see only the window, not the whole segment. The crossfade itself is
  exact: its two gains sum to 1, so two windows that agree on the overlap reproduce it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import OptionError
from .numerics import is_int

Grid = Callable[[int], int]  # the model's mel frames for its first N codes (IndexTTS-2: floor(1.72·N))


def fade_in(n: int) -> np.ndarray:
    """Rising half of a Hann window, sampled at bin centres; ``1 - fade_in(n)`` is the falling
    half, so the pair sums to exactly 1 (np.hanning's halves do not: its period is 2n-1)."""
    k = np.arange(n, dtype=np.float64)
    return (np.sin(np.pi * (k + 0.5) / (2 * n)) ** 2).astype(np.float32)


class Crossfader:
    """Joins overlapping audio windows: each window's head is blended with the previous window's
    held-back tail, which is as long as the overlap the next window was planned with."""

    def __init__(self):
        self.tail = np.zeros(0, np.float32)

    def push(self, audio: np.ndarray, keep: int) -> np.ndarray:
        """Blend the head of ``audio`` with the held tail, hold back its last ``keep`` samples (the
        part the next window overlaps; 0 for the last window) and return the rest."""
        audio = np.asarray(audio, np.float32)
        m = self.tail.size
        if m > audio.size:
            raise ValueError(f"crossfade: a {audio.size}-sample window is shorter than its {m}-sample overlap")
        if m:
            w = fade_in(m)
            audio = np.concatenate([self.tail * (1.0 - w) + audio[:m] * w, audio[m:]])
        keep = min(keep, audio.size)
        self.tail = audio[audio.size - keep:]
        return audio[: audio.size - keep]

    def flush(self) -> np.ndarray:
        tail, self.tail = self.tail, np.zeros(0, np.float32)
        return tail


@dataclass(frozen=True)
class ChunkPlan:
    """When to synthesize and which codes each window covers."""

    chunk_codes: int = 100
    overlap_codes: int = 20

    def __post_init__(self):
        if not (is_int(self.chunk_codes) and self.chunk_codes >= 1):
            raise OptionError("chunk_codes", self.chunk_codes, "stream chunk must be >= 1 code, an integer")
        if not (is_int(self.overlap_codes) and 0 <= self.overlap_codes <= self.chunk_codes):
            raise OptionError("overlap_codes", self.overlap_codes,
                              f"stream overlap must be in [0, chunk={self.chunk_codes}] codes")

    def window(self, start: int, end: int) -> tuple[int, int]:
        """Codes ``[a, end)`` to synthesize for new codes ``[start, end)``."""
        return max(0, start - self.overlap_codes), end

    @staticmethod
    def frames(a: int, e: int, grid: Grid) -> tuple[int, int]:
        """The segment's mel frames that codes ``[a, e)`` cover. Windows take their slice of the
        segment's frame grid (not ``grid(e - a)``), so the streamed audio has exactly the
        non-streamed length and every window sits where its frames are in the whole."""
        return grid(a), grid(e)

    def held_back(self, end: int, hop: int, grid: Grid) -> int:
        """Samples at the end of a window ending at code ``end`` that the next window overlaps."""
        f0, f1 = self.frames(self.window(end, end)[0], end, grid)
        return (f1 - f0) * hop


__all__ = ["ChunkPlan", "Crossfader", "fade_in"]
