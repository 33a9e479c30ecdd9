"""One frozen spec per stage: the single source of truth for export, profiles, buffers and parity.

A :class:`StageSpec` names its ordered inputs and outputs (name, dtype, dims) and the named
dynamic dimensions with min/opt/max ranges shared between tensors (``T_mel`` is one range
everywhere it appears). Export arguments, TensorRT optimization profiles, dummy inputs, runtime
buffer allocation, binding and the parity harness are all derived from it. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

DType = Literal["float32", "float16", "int64", "int32", "bool"]
Point = Literal["min", "opt", "max"]


@dataclass(frozen=True)
class Dim:
    """A named dynamic dimension. ``min <= opt <= max``; fixed dims are plain ints in shapes."""

    name: str
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not (1 <= self.min <= self.opt <= self.max):
            raise ValueError(f"dim {self.name}: need 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}")

    def at(self, point: Point) -> int:
        return {"min": self.min, "opt": self.opt, "max": self.max}[point]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: DType
    shape: tuple[int | str, ...]  # ints are fixed sizes; strings name a Dim of the stage
    # integer inputs: values are drawn in [low, high) for random parity inputs (e.g. code ids)
    low: int = 0
    high: int = 0
    # a float tensor carried in the graph's own precision (the KV cache: half the bytes per decode
    # step in fp16); every other float input and output stays float32 at the graph's boundary
    reduced: bool = False

    def dtype_at(self, precision: str) -> str:
        """The tensor's dtype in the ``precision`` ('fp32' | 'fp16' | 'bf16' | 'int8') graph. int8
        quantizes weights inside the graph only: every boundary tensor, the KV cache included,
        stays as the fp32 graph has it (int8 K/V would need scales the cache does not carry)."""
        if not self.reduced or self.dtype != "float32" or precision in ("fp32", "int8"):
            return self.dtype
        return {"fp16": "float16", "bf16": "bfloat16"}[precision]

    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


@dataclass(frozen=True)
class Tolerance:
    """How an output is compared. ``stat``: 'max' (max abs error within atol + rtol·|ref|),
    'quantile' (the q-quantile of that error ratio ≤ 1, for outputs where rare outliers are
    benign), 'snr' (signal-to-noise in dB ≥ snr_db, for waveforms) or 'exact' (integer outputs)."""

    stat: Literal["max", "quantile", "snr", "exact"] = "max"
    atol: float = 1e-4
    rtol: float = 1e-4
    quantile: float = 0.999
    snr_db: float = 60.0


@dataclass(frozen=True)
class CacheSpec:
    """A stage that reads a cache the runtime owns and returns only the entries the call adds.

    The cache is one buffer of ``len(inputs)`` equal, contiguous parts (a GPT's (layer, key/value)
    pairs, in that order); the graph reads each part as its own input, ``inputs[j]`` binding part
    ``j`` in place (never written by the graph). One input per part, not one for the whole cache,
    because a graph can only reach a part of one input through a Slice, which ONNX Runtime
    executes as a copy: the whole cache copied on every step (measured at full size, 1 row, 1000
    codes, capacity 1312: 128 ms per step against 96 ms with per-part inputs, equal outputs).
    ``new``: the added entries of every part, stacked on the leading axes (size 1 on ``axis``,
    ``axis`` counted in a part's shape); ``length``: each row's count of valid entries, where its
    new entry goes."""

    inputs: tuple[str, ...]
    new: str
    length: str
    axis: int


@dataclass(frozen=True)
class StageSpec:
    name: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: tuple[Dim, ...]
    # per output name, per precision ('fp32', 'fp16', 'bf16', 'int8': a stage without an int8 entry
    # for each output is not quantized)
    tolerances: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)
    # output dims that are functions of input dims (e.g. T' = (T - 1) // 2) are listed as their
    # own Dim so buffers can be sized; `derived` says how to compute them from the inputs'
    derived: Mapping[str, str] = field(default_factory=dict)
    # the cache relation of a decode step (see CacheSpec), or None
    cache: CacheSpec | None = None

    def __post_init__(self) -> None:
        names = [d.name for d in self.dims]
        if len(set(names)) != len(names):
            raise ValueError(f"stage {self.name}: a dim is declared twice: {names}")
        seen = set()
        for t in self.inputs + self.outputs:
            if t.name in seen:
                raise ValueError(f"stage {self.name}: tensor {t.name} declared twice")
            seen.add(t.name)
            for d in t.shape:
                if isinstance(d, str) and d not in names:
                    raise ValueError(f"stage {self.name}: tensor {t.name} uses undeclared dim {d!r}")
        for out in self.tolerances:
            if out not in {t.name for t in self.outputs}:
                raise ValueError(f"stage {self.name}: tolerance for unknown output {out!r}")
        if self.cache is not None:
            c = self.cache
            parts, n, ln = [self.input(x) for x in c.inputs], self.output(c.new), self.input(c.length)
            i = parts[0]
            lead = n.shape[: len(n.shape) - len(i.shape)]
            want = tuple(1 if a == c.axis else d for a, d in enumerate(i.shape))
            if (any((p.dtype, p.shape, p.reduced) != (i.dtype, i.shape, i.reduced) for p in parts)
                    or not all(isinstance(d, int) for d in lead) or int(np.prod(lead)) != len(parts)
                    or n.dtype != i.dtype or n.shape[len(lead):] != want or n.reduced != i.reduced
                    or ln.dtype != "int64"):
                raise ValueError(f"stage {self.name}: the cache parts must share one dtype and shape, {n.name} must "
                                 f"stack one entry per part (a part's shape with 1 on axis {c.axis}) in their "
                                 f"dtype, and {ln.name} must be int64")

    # ------------------------------------------------------------------ derived views

    @property
    def dim_map(self) -> dict[str, Dim]:
        return {d.name: d for d in self.dims}

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(f"stage {self.name} has no input {name!r}")

    def output(self, name: str) -> TensorSpec:
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(f"stage {self.name} has no output {name!r}")

    def cache_dims(self) -> tuple[int, int, int]:
        """(layers, heads, head_dim) of the cache: the runtime's (layers, 2, rows, heads, capacity,
        head_dim) buffer, whose (layer, key/value) parts the graph reads (``CacheSpec``)."""
        layers = self.output(self.cache.new).shape[0]
        _, heads, _, hd = self.input(self.cache.inputs[0]).shape
        return layers, heads, hd

    def shape(self, t: TensorSpec, sizes: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else int(sizes[d]) for d in t.shape)

    def sizes_at(self, point: Point) -> dict[str, int]:
        return self.resolve({d.name: d.at(point) for d in self.dims if d.name not in self.derived})

    def resolve(self, free: Mapping[str, int]) -> dict[str, int]:
        """Complete ``free`` dim sizes with the derived ones (e.g. S = 34 + L_text + M)."""
        sizes = dict(free)
        for name, expr in self.derived.items():
            sizes[name] = int(eval(expr, {"__builtins__": {}}, dict(sizes)))  # noqa: S307 — our own spec strings
        return sizes

    @property
    def free_dims(self) -> tuple[Dim, ...]:
        return tuple(d for d in self.dims if d.name not in self.derived)

    def sizes_of(self, feed: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Dim sizes read off the input arrays (fixed sizes checked too), derived dims completed.
        Raises naming the stage, tensor and both shapes when an input does not fit the spec."""
        sizes: dict[str, int] = {}
        for t in self.inputs:
            if t.name not in feed:
                continue
            shape = tuple(np.shape(feed[t.name]))
            if len(shape) != len(t.shape):
                raise ValueError(f"stage {self.name}: input {t.name} has shape {shape}, the spec {t.shape}")
            for d, n in zip(t.shape, shape):
                if isinstance(d, int):
                    if d != n:
                        raise ValueError(f"stage {self.name}: input {t.name} has shape {shape}, the spec {t.shape}")
                elif sizes.setdefault(d, int(n)) != n:
                    raise ValueError(f"stage {self.name}: dim {d} is {sizes[d]} in one input and {n} in {t.name}")
        return self.resolve({k: v for k, v in sizes.items() if k not in self.derived})

    def check_sizes(self, sizes: Mapping[str, int]) -> None:
        """Raise naming the stage, the dim and both numbers when a request is out of range."""
        for d in self.dims:
            if d.name in sizes and not (d.min <= sizes[d.name] <= d.max):
                raise ValueError(f"stage {self.name}: {d.name} = {sizes[d.name]} is outside the supported "
                                 f"range [{d.min}, {d.max}]")

    def tolerance(self, output: str, precision: str) -> Tolerance:
        return self.tolerances.get(output, {}).get(precision, Tolerance())

    def graph_json(self) -> dict:
        """What shapes the traced graph: tensor names, dtypes and shapes, every dim's min and max,
        the derived dims and the cache relation. Not the description, tolerances or ``opt`` sizes (they
        only check or tune a graph), nor a precision (graphs are traced in fp32)."""
        tensors = lambda ts: [[t.name, t.dtype, list(t.shape), t.reduced] for t in ts]  # noqa: E731
        return {"name": self.name, "inputs": tensors(self.inputs), "outputs": tensors(self.outputs),
                "dims": {d.name: [d.min, d.max] for d in self.dims}, "derived": dict(self.derived),
                "cache": asdict(self.cache) if self.cache else None}

    def graph_key(self) -> str:
        """Changes exactly when the graph a spec traces changes shape (see :meth:`graph_json`)."""
        return _digest(self.graph_json())

    def check_key(self) -> str:
        """What the parity gate's verdict depends on beyond the graph: the tolerances, the sizes
        it checks at (``opt``) and the integer inputs' value ranges."""
        return _digest({"tolerances": {k: {p: asdict(t) for p, t in v.items()} for k, v in self.tolerances.items()},
                        "opt": {d.name: d.opt for d in self.dims},
                        "ranges": {t.name: [t.low, t.high] for t in self.inputs if t.low or t.high}})


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
