"""The decode step's KV cache in one device buffer: what a GPU backend's decode graph reads in place.

The same operations as ``kvcache.HostKVCache`` (see there for what each one is for), done with
device copies on a stream through :class:`~.cuda_device.Device`. Both GPU backends use it: the
TensorRT runner binds each (layer, key/value) part's address (``part_ptr``) as the engine's input
for that part, and ONNX Runtime's CUDA provider binds the same addresses as those inputs' buffers
(``OrtRunner`` with a device), so neither copies the cache between host and device on any step.
Only ``kv_new`` (a few KB) is copied, device to device, into each row's position after the step.
"""

from __future__ import annotations

import numpy as np

from .cuda_device import Device
from .runners import BackendError


class DeviceKVCache:
    """The decode cache in one device buffer, (layers, 2, rows, heads, capacity, head_dim); the same
    operations as ``kvcache.HostKVCache``, done with device copies on the runner's stream."""

    def __init__(self, dev: Device, stream, layers: int, rows: int, heads: int, capacity: int, head_dim: int,
                 dtype):
        self.dev, self.stream = dev, stream
        self.layers, self.rows, self.heads, self.hd, self.dtype = layers, rows, heads, head_dim, np.dtype(dtype)
        self.capacity = capacity
        self.ptr = dev.malloc(self.nbytes(capacity), stream=stream)
        self._scratch, self._scratch_bytes = 0, 0

    @property
    def shape(self) -> tuple:
        return (self.layers, 2, self.rows, self.heads, self.capacity, self.hd)

    def part_ptr(self, j: int) -> int:
        """The address of part ``j`` (layer j // 2, keys if j is even, else values), of shape
        (rows, heads, capacity, head_dim): what the decode graph's ``j``-th cache input binds."""
        return self.ptr + j * self.rows * self.heads * self.capacity * self._row_bytes

    def nbytes(self, capacity: int) -> int:
        return self.layers * 2 * self.rows * self.heads * capacity * self.hd * self.dtype.itemsize

    @property
    def _row_bytes(self) -> int:  # one position of one (layer, k/v, row, head)
        return self.hd * self.dtype.itemsize

    def load_prefix(self, kv0: np.ndarray, rows: slice | None = None) -> None:
        """(L, 2, 1, H, S, hd) host → positions [0, S) of every row (or of ``rows`` only)."""
        kv0 = np.ascontiguousarray(kv0.astype(self.dtype, copy=False))
        s, item = kv0.shape[4], self.dtype.itemsize
        staging = self.dev.malloc(kv0.nbytes, zero=False, stream=self.stream)
        try:
            self.dev.h2d(staging, kv0, self.stream)
            for b in range(*(rows or slice(None)).indices(self.rows)):  # each (layer, k/v, head) of it, into row b
                for ls in range(self.layers * 2):
                    self.dev.copy2d(self._at(ls, b, 0, 0), self.capacity * self._row_bytes,
                                    staging + ls * self.heads * s * self.hd * item, s * self.hd * item,
                                    s * self.hd * item, self.heads, self.stream)
            self.dev.sync(self.stream)
        finally:
            self.dev.free(staging)

    def _at(self, ls: int, row: int, head: int, pos: int) -> int:
        return self.ptr + (((ls * self.rows + row) * self.heads + head) * self.capacity + pos) * self._row_bytes

    def write_device(self, new_ptr: int, positions: np.ndarray) -> None:
        """``kv_new`` (L, 2, rows, H, 1, hd) on the device → each row's position."""
        positions = np.asarray(positions).reshape(-1)
        if np.any(positions >= self.capacity) or np.any(positions < 0):
            raise BackendError(f"decode cache: a position in {positions.tolist()} is outside its {self.capacity}")
        rb = self._row_bytes
        if np.all(positions == positions[0]):  # one request: every (layer, k/v, row, head) row, one 2-D copy
            self.dev.copy2d(self.ptr + int(positions[0]) * rb, self.capacity * rb, new_ptr, rb, rb,
                            self.layers * 2 * self.rows * self.heads, self.stream)
            return
        b = 0
        while b < self.rows:  # runs of rows sharing a position (a request's beams): one 3-D copy each
            e = b + 1
            while e < self.rows and positions[e] == positions[b]:
                e += 1
            self.dev.copy3d(self._at(0, b, 0, int(positions[b])), self.capacity * rb, self.rows * self.heads,
                            new_ptr + b * self.heads * rb, rb, self.rows * self.heads, rb, (e - b) * self.heads,
                            self.layers * 2, self.stream)
            b = e

    def reorder(self, rows: np.ndarray, src: np.ndarray) -> None:
        """Row ``rows[i]`` becomes a copy of row ``src[i]``: the sources are snapshot first (a
        reorder may read a row it also overwrites), then written; one 2-D copy per row each way."""
        block = self.heads * self.capacity * self._row_bytes  # one row of one (layer, k/v)
        pitch = self.rows * block
        need = len(rows) * block * self.layers * 2
        if need > self._scratch_bytes:
            self.dev.free(self._scratch)
            self._scratch, self._scratch_bytes = self.dev.malloc(need, zero=False, stream=self.stream), need
        n = len(rows)
        for i, s in enumerate(src):
            self.dev.copy2d(self._scratch + i * block, n * block, self._at(0, int(s), 0, 0), pitch, block,
                            self.layers * 2, self.stream)
        for i, r in enumerate(rows):
            self.dev.copy2d(self._at(0, int(r), 0, 0), pitch, self._scratch + i * block, n * block, block,
                            self.layers * 2, self.stream)

    def rebuild(self, keep: np.ndarray, rows: int, capacity: int) -> None:
        """New row ``i`` is old row ``keep[i]`` (its first ``capacity`` positions), the rest empty:
        one 2-D copy per kept row and (layer, k/v), once per change of the batch's requests."""
        rb, old_rows, old_cap, old_ptr = self._row_bytes, self.rows, self.capacity, self.ptr
        new = self.dev.malloc(self.layers * 2 * rows * self.heads * capacity * rb, stream=self.stream)
        width = min(capacity, old_cap) * rb
        for i, src in enumerate(np.asarray(keep, np.int64).tolist()):
            for ls in range(self.layers * 2):
                self.dev.copy2d(new + ((ls * rows + i) * self.heads) * capacity * rb, capacity * rb,
                                old_ptr + ((ls * old_rows + src) * self.heads) * old_cap * rb, old_cap * rb, width,
                                self.heads, self.stream)
        self.dev.sync(self.stream)
        self.dev.free(old_ptr)
        self.ptr, self.rows, self.capacity = new, rows, capacity

    def grow(self, capacity: int) -> None:
        if capacity <= self.capacity:
            return
        rb = self._row_bytes
        new = self.dev.malloc(self.nbytes(capacity), stream=self.stream)
        self.dev.copy2d(new, capacity * rb, self.ptr, self.capacity * rb, self.capacity * rb,
                        self.layers * 2 * self.rows * self.heads, self.stream)
        self.dev.sync(self.stream)
        self.dev.free(self.ptr)
        self.ptr, self.capacity = new, capacity

    def close(self) -> None:
        self.dev.free(self.ptr)
        self.dev.free(self._scratch)
        self.ptr = self._scratch = self._scratch_bytes = 0


__all__ = ["DeviceKVCache"]
