"""Stage runners: the one interface every backend gives the pipeline, and which backend to use.

A :class:`StageRunner` runs one stage's graph or engine: ``run(feed, bound)`` takes numpy inputs by
name and returns outputs by name; ``new_cache(host)`` turns the spec's in-place input (the KV cache)
into a buffer the stage updates in place; ``close()`` frees what the runner took (sessions, device
memory, CUDA graphs). ONNX Runtime (``ort_backend``) and TensorRT (``trt_backend``) implement it;
each backend's libraries are imported only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import UserError
from .spec import StageSpec

BACKENDS = ("auto", "trt", "ort")


class BackendError(UserError, RuntimeError):
    """A backend cannot run here, or a graph does not fit its spec."""


class InplaceCache(Protocol):
    bound: Mapping[str, object]  # what ``StageRunner.run`` takes as ``bound``

    def reorder(self, rows: np.ndarray, src: np.ndarray) -> None: ...

    def close(self) -> None: ...


class StageRunner(Protocol):
    spec: StageSpec
    provider: str  # what executes it: an ONNX Runtime provider, or "TensorRT <version>"

    def run(self, feed: Mapping[str, np.ndarray], bound: Mapping[str, object] | None = None
            ) -> dict[str, np.ndarray | None]: ...

    def new_cache(self, host: np.ndarray) -> InplaceCache: ...

    def close(self) -> None: ...


def choose_backend(engine_dir: str | Path, manifest: dict, stages: Sequence[str], requested: str = "auto"
                   ) -> tuple[str, str]:
    """('trt' | 'ort', why). ``auto`` takes TensorRT when every stage has an engine that this
    machine's TensorRT and GPU can run, else ONNX Runtime; ``trt`` insists (BackendError saying why
    not and how to rebuild)."""
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}: use {', '.join(BACKENDS)}")
    if requested == "ort":
        return "ort", "requested"
    missing = [n for n in stages if not (manifest["stages"].get(n) or {}).get("trt")]
    problem = None
    if missing:
        which = "no TensorRT engines" if len(missing) == len(stages) else \
            f"no TensorRT engine for {', '.join(missing)}"
        from .workdirs import build_command

        problem = (f"{which} in {engine_dir}: build them on a machine with TensorRT and an NVIDIA GPU with "
                   f"`{build_command(engine_dir, manifest, precision='fp16')}`")
    else:
        from .engine_plan import engine_compat_error
        from .gpu import TensorRTUnavailable, gpu_info, import_tensorrt

        try:
            trt = import_tensorrt()
            gpu, cc = gpu_info()
            errs = [e for n in stages
                    if (e := engine_compat_error(manifest["stages"][n]["trt"], trt.__version__, gpu, cc, engine_dir))]
            problem = errs[0] if errs else None
        except TensorRTUnavailable as e:
            problem = f"TensorRT cannot run here: {e}"
    if problem is None:
        return "trt", "engines match this TensorRT and GPU"
    if requested == "trt":
        raise BackendError(problem)
    return "ort", problem


def open_runner(backend: str, engine_dir: Path, entry: dict, spec: StageSpec, *, plan_entry: dict | None = None,
                providers: Sequence[str] | None = None, threads: int | None = None) -> StageRunner:
    """The runner of one stage, from its manifest entry."""
    if backend == "trt":
        from .trt_backend import TrtRunner

        return TrtRunner(engine_dir / entry["trt"]["engine"], spec, plan_entry)
    from .ort_backend import OrtRunner

    return OrtRunner(engine_dir / entry["onnx"], spec, providers, threads)


__all__ = ["BACKENDS", "BackendError", "StageRunner", "InplaceCache", "choose_backend", "open_runner"]
