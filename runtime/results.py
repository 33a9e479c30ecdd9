"""What a synthesis returns, shared by the runtime pipelines and the PyTorch reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Segment:
    codes: np.ndarray  # (N,) int64 semantic codes, without the stop code
    hit_stop: bool  # False: the code limit was reached first
    mel: np.ndarray  # (1, n_mels, T_gen)
    wav: np.ndarray  # float32 in [-1, 1]


@dataclass
class Result:
    wav: np.ndarray  # int16, segments joined with the interval silence
    sample_rate: int
    segments: list[Segment]
    seconds: dict[str, float]  # wall time per part of the pipeline

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate


__all__ = ["Segment", "Result"]
