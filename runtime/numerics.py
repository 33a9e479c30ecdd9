"""Small numeric rules the runtime computes on the host, shared with the PyTorch reference."""

from __future__ import annotations

import math
import numbers

import numpy as np


def is_int(x) -> bool:
    """An integer (numpy's too), not a bool: the type rule of every integer option."""
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def is_number(x) -> bool:
    """A finite real number (numpy's too), not a bool: NaN and ±Inf are refused by every option."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) and math.isfinite(x)


def nearest_index(t_in: int, t_out: int) -> np.ndarray:
    """PyTorch legacy 'nearest' source index in float32 arithmetic: floor(dst · (T_in / T_out)).
    The length regulator's interpolation is this gather, so the graph takes it as an input."""
    scale = np.float32(t_in) / np.float32(t_out)
    idx = np.floor(np.arange(t_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, t_in - 1)


__all__ = ["nearest_index", "is_int", "is_number"]
