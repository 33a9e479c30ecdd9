"""The decode step's KV cache, owned by the runtime (the graph only reads it; see ``CacheSpec``).

Layout (layers, 2, rows, heads, capacity, head_dim), in the graph's precision: each (layer,
key/value) part is contiguous, and the decode graph reads each part as its own input, in place
(``part``). Rows are beams, of one request or of several (serving); each row has its own length. The operations a decode loop
needs, and what each one moves:
- ``load_prefix``: the prefill's cache (one row) into every row, positions [0, S);
- ``write``: a step's new entries (``kv_new``, one per row) at each row's own position — a few KB,
  never the whole cache;
- ``reorder``: after a beam step, row ``rows[i]`` becomes a copy of row ``src[i]`` (changed rows only);
- ``rebuild``: a new row set and capacity — kept rows first, in the given order, then empty rows
  (serving: requests join and leave the decode batch between steps; one copy per change, never
  per step);
- ``grow``: more capacity, keeping the valid prefix. The attention reads every position up to the
  capacity (masked beyond each row's length), so the loop grows the capacity with the lengths
  (:func:`next_capacity`) instead of allocating the longest segment's up front: a step then costs
  what the codes so far need, not what the longest allowed segment would.
:class:`HostKVCache` is the numpy version (ONNX Runtime's CPU provider reads it in place through an
OrtValue over the same memory); the TensorRT backend keeps the same operations on the device.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

# capacity multiplies by this when a step would not fit: O(log n) copies per segment. Every step
# reads the whole capacity, so the spare positions cost on every step,
# while a growth costs one copy: ×1.25 keeps about 11 % spare on average (×2: about 44 %) for
# ~10 copies over a 1000-code segment (a growth is one pass over the cache, as one step's slices are)
GROWTH = 1.25
FIRST_EXTRA = 64  # positions past the prompt the first allocation leaves room for


def next_capacity(needed: int, current: int, limit: int) -> int:
    """The capacity to grow to so that ``needed`` positions fit: at least ×GROWTH the current one
    (so a segment reallocates O(log n) times), at most ``limit``."""
    if needed > limit:
        raise ValueError(f"a decode cache of {needed} positions exceeds the supported {limit}")
    if needed <= current:
        return current
    return min(max(needed, int(current * GROWTH) + 1), limit)


class KVCache(Protocol):
    rows: int
    capacity: int
    dtype: np.dtype

    def load_prefix(self, kv0: np.ndarray, rows: slice | None = None) -> None: ...

    def rebuild(self, keep: np.ndarray, rows: int, capacity: int) -> None: ...

    def write(self, new: np.ndarray, positions: np.ndarray) -> None: ...

    def reorder(self, rows: np.ndarray, src: np.ndarray) -> None: ...

    def grow(self, capacity: int) -> None: ...

    def close(self) -> None: ...


class HostKVCache:
    """The cache as one numpy array; ``array`` is what the decode graph's ``kv`` input reads."""

    def __init__(self, layers: int, rows: int, heads: int, capacity: int, head_dim: int, dtype):
        self.array = np.zeros((layers, 2, rows, heads, capacity, head_dim), dtype)
        self.version = 0  # bumped whenever ``array`` is replaced (a runner rebinds it then)

    @property
    def rows(self) -> int:
        return self.array.shape[2]

    @property
    def capacity(self) -> int:
        return self.array.shape[4]

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def part(self, j: int) -> np.ndarray:
        """Part ``j`` (layer j // 2, keys if j is even, else values): a contiguous view."""
        return self.array[j // 2, j % 2]

    def load_prefix(self, kv0: np.ndarray, rows: slice | None = None) -> None:
        """(L, 2, 1, H, S, hd) → positions [0, S) of every row (or of ``rows`` only)."""
        self.array[:, :, rows or slice(None), :, : kv0.shape[4]] = kv0.astype(self.dtype, copy=False)

    def rebuild(self, keep: np.ndarray, rows: int, capacity: int) -> None:
        """New row ``i`` is old row ``keep[i]`` (its first ``capacity`` positions); rows past
        ``len(keep)`` are empty. A smaller capacity drops positions: the caller keeps every kept
        row's length within it."""
        keep = np.asarray(keep, np.int64)
        a = self.array
        new = np.zeros((*a.shape[:2], rows, a.shape[3], capacity, a.shape[5]), a.dtype)
        n = min(capacity, a.shape[4])
        new[:, :, : keep.size, :, :n] = a[:, :, keep, :, :n]
        self.array, self.version = new, self.version + 1

    def write(self, new: np.ndarray, positions: np.ndarray) -> None:
        """new (L, 2, rows, H, 1, hd): row b's entry goes to position ``positions[b]``."""
        rows = np.arange(self.rows)
        # advanced indices on axes 2 and 4 put the rows axis first: (rows, L, 2, H, hd)
        self.array[:, :, rows, :, np.asarray(positions)] = np.moveaxis(new[:, :, :, :, 0], 2, 0)

    def reorder(self, rows: np.ndarray, src: np.ndarray) -> None:
        self.array[:, :, rows] = self.array[:, :, src]

    def grow(self, capacity: int) -> None:
        if capacity <= self.capacity:
            return
        a = self.array
        grown = np.zeros((*a.shape[:4], capacity, a.shape[5]), a.dtype)
        grown[..., : a.shape[4], :] = a
        self.array, self.version = grown, self.version + 1

    def close(self) -> None:
        self.array = np.zeros((0,) * 6, self.array.dtype)


__all__ = ["KVCache", "HostKVCache", "next_capacity", "GROWTH", "FIRST_EXTRA"]
