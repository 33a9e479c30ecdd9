"""Stage runners: the one interface every backend gives the pipeline, and which backend to use.

A :class:`StageRunner` runs one stage's graph or engine: ``run(feed, cache=, feedback=, fetch=)``
takes numpy inputs by name and returns outputs by name; ``set_constants`` binds inputs that stay
the same over the calls that follow (once, on the device for TensorRT); ``feedback`` keeps an
output as the next call's input (the CFM's ``x``: on the device for TensorRT); ``new_cache`` makes
the KV cache a decode stage reads (``kvcache.py``); ``close()`` frees what the runner took
(sessions, device memory, CUDA graphs). ONNX Runtime (``ort_backend``) and TensorRT
(``trt_backend``) implement it; each backend's libraries are imported only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import UserError
from .kvcache import KVCache
from .spec import StageSpec

BACKENDS = ("auto", "trt", "ort")


class BackendError(UserError, RuntimeError):
    """A backend cannot run here, or a graph does not fit its spec."""


class StageRunner(Protocol):
    spec: StageSpec
    provider: str  # what executes it: an ONNX Runtime provider, or "TensorRT <version>"
    dtypes: Mapping[str, np.dtype]  # every input and output's dtype, read from the graph / engine

    def run(self, feed: Mapping[str, np.ndarray], *, cache: KVCache | None = None,
            feedback: Mapping[str, str] | None = None, fetch: Sequence[str] | None = None) -> dict[str, np.ndarray]: ...

    def set_constants(self, feed: Mapping[str, np.ndarray]) -> None: ...

    def clear_constants(self) -> None: ...

    def new_cache(self, rows: int, capacity: int) -> KVCache: ...

    def close(self) -> None: ...


def choose_backend(engine_dir: str | Path, manifest: dict, stages: Sequence[str], requested: str = "auto",
                   precision: str = "fp32") -> tuple[str, str]:
    """('trt' | 'ort', why). ``auto`` takes TensorRT when every stage has an engine of the asked
    ``precision`` that this machine's TensorRT and GPU can run, else ONNX Runtime; ``trt`` insists
    (BackendError saying why not and how to rebuild)."""
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}: use {', '.join(BACKENDS)}")
    if requested == "ort":
        return "ort", "requested"
    if precision == "int8":  # dynamic-int8 graphs are ONNX Runtime's (check_open_options refuses trt)
        if requested == "trt":
            raise BackendError("int8 graphs run on ONNX Runtime only: TensorRT's int8 needs Q/DQ calibration, "
                               "which `tts-export build` does not do")
        return "ort", "int8 graphs run on ONNX Runtime only"
    missing = [n for n in stages if not (manifest["stages"].get(n) or {}).get("trt")]
    problem = None
    if missing:
        which = "no TensorRT engines" if len(missing) == len(stages) else \
            f"no TensorRT engine for {', '.join(missing)}"
        from .workdirs import build_command

        want = precision if precision != "fp32" else "fp16"
        problem = (f"{which} in {engine_dir}: build them on a machine with TensorRT and an NVIDIA GPU with "
                   f"`{build_command(engine_dir, manifest, precision=want)}`")
    else:  # TensorRT itself first: on a machine without it, that is the reason, whatever the engines are
        from .engine_plan import engine_compat_error
        from .gpu import TensorRTUnavailable, gpu_info, import_tensorrt

        try:
            trt = import_tensorrt()
            gpu, cc = gpu_info()
        except TensorRTUnavailable as e:
            trt, problem = None, f"TensorRT cannot run here: {e}"
        built = _plan_precision(engine_dir)
        if trt is not None and built != precision:
            from .workdirs import build_command

            problem = (f"the TensorRT engines in {engine_dir} are {built or 'of no known precision (no build plan)'}"
                       f", not {precision}: build {precision} ones with "
                       f"`{build_command(engine_dir, manifest, precision=precision)}`")
        elif trt is not None:
            errs = [e for n in stages
                    if (e := engine_compat_error(manifest["stages"][n]["trt"], trt.__version__, gpu, cc, engine_dir))]
            problem = errs[0] if errs else None
    if problem is None:
        return "trt", "engines match this TensorRT and GPU"
    if requested == "trt":
        raise BackendError(problem)
    return "ort", problem


def _plan_precision(engine_dir) -> str | None:
    from .engine_plan import load_plan

    try:
        return load_plan(engine_dir).get("precision")
    except (OSError, ValueError):
        return None


def open_runner(backend: str, engine_dir: Path, entry: dict, spec: StageSpec, *, precision: str = "fp32",
                plan_entry: dict | None = None, providers: Sequence[str] | None = None,
                threads: int | None = None) -> StageRunner:
    """The runner of one stage, from its manifest entry: its TensorRT engine, or its ``precision``
    ONNX graph for ONNX Runtime (resident on the GPU with the CUDA provider: ``ort_backend``)."""
    if backend == "trt":
        from .trt_backend import TrtRunner

        return TrtRunner(engine_dir / entry["trt"]["engine"], spec, plan_entry)
    from .manifest import stage_graph
    from .ort_backend import OrtRunner, resident_device

    return OrtRunner(engine_dir / stage_graph(entry, precision)["onnx"], spec, providers, threads,
                     device=resident_device(providers))


__all__ = ["BACKENDS", "BackendError", "StageRunner", "choose_backend", "open_runner"]
