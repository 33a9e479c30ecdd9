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
class StageSpec:
    name: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: tuple[Dim, ...]
    # per output name, per precision ('fp32', 'fp16', 'bf16')
    tolerances: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)
    # output dims that are functions of input dims (e.g. T' = (T - 1) // 2) are listed as their
    # own Dim so buffers can be sized; `derived` says how to compute them from the inputs'
    derived: Mapping[str, str] = field(default_factory=dict)

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

    def check_sizes(self, sizes: Mapping[str, int]) -> None:
        """Raise naming the stage, the dim and both numbers when a request is out of range."""
        for d in self.dims:
            if d.name in sizes and not (d.min <= sizes[d.name] <= d.max):
                raise ValueError(f"stage {self.name}: {d.name} = {sizes[d.name]} is outside the supported "
                                 f"range [{d.min}, {d.max}]")

    def tolerance(self, output: str, precision: str) -> Tolerance:
        return self.tolerances.get(output, {}).get(precision, Tolerance())

    def to_json(self) -> dict:
        d = asdict(self)
        d["tolerances"] = {k: {p: asdict(t) for p, t in v.items()} for k, v in self.tolerances.items()}
        d["derived"] = dict(self.derived)
        return d

    def spec_hash(self) -> str:
        """Changes whenever anything that shapes the graph or its checks changes."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
