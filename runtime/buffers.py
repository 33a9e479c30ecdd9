"""Device buffer planning, from the stage specs and the engine profiles (plain code, tested on CPU).

Each engine gets one buffer per I/O tensor, sized for the largest shape its profiles allow, so a
request never allocates. The decode step's KV cache is the exception that matters: ONNX Runtime
aliases ``kv_out`` onto ``kv`` (updated in place), while TensorRT does not allow an input and an
output to share memory, so the TensorRT backend ping-pongs two cache buffers: step k reads A and
writes B, step k+1 reads B and writes A; no copy either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import StageSpec

KV_ALIASES = {"gpt_decode": ("kv", "kv_out")}


@dataclass(frozen=True)
class Buffer:
    tensor: str
    dtype: str
    shape: tuple[int, ...]  # the largest shape over the profiles
    nbytes: int
    shares_with: str = ""  # another tensor whose memory this one uses ('' = its own)


def max_sizes(spec: StageSpec, profile_dims: list[dict] | None = None) -> dict[str, int]:
    """Largest size of every dim: over the given profiles (dim -> [min, opt, max]) or the spec."""
    if profile_dims:
        free = {d.name: max(p[d.name][2] for p in profile_dims) for d in spec.free_dims}
    else:
        free = {d.name: d.max for d in spec.free_dims}
    return spec.resolve(free)


def plan_buffers(spec: StageSpec, backend: str, profile_dims: list[dict] | None = None) -> list[Buffer]:
    """``backend``: 'ort' (the KV cache aliased in place) or 'trt' (two cache buffers, ping-pong)."""
    if backend not in ("ort", "trt"):
        raise ValueError(f"buffer plan: unknown backend {backend!r}")
    sizes = max_sizes(spec, profile_dims)
    alias = KV_ALIASES.get(spec.name)
    out = []
    for t in spec.inputs + spec.outputs:
        shape = spec.shape(t, sizes)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize
        shares = ""
        if alias and t.name == alias[1] and backend == "ort":
            shares, nbytes = alias[0], 0
        out.append(Buffer(t.name, t.dtype, shape, nbytes, shares))
    return out


def total_bytes(buffers: list[Buffer]) -> int:
    return sum(b.nbytes for b in buffers)


__all__ = ["Buffer", "plan_buffers", "max_sizes", "total_bytes", "KV_ALIASES"]
