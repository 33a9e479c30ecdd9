"""ONNX Runtime backend: one :class:`~.runners.StageRunner` per stage, bound by name from the spec.

``onnxruntime`` is imported here only (lazily, with a clear message naming the extra to install).
Session options are set on purpose: full graph optimization, intra-op threads from the caller (or
the machine), sequential execution. The provider actually in use is checked: onnxruntime-gpu falls
back to CPU silently when CUDA libraries are missing, and we report that instead of pretending.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .runners import BackendError
from .spec import StageSpec

log = logging.getLogger(__name__)


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("onnxruntime is not installed: install the `cpu` extra (pip install 'indextts-trt[cpu]') "
                           "or the `gpu` extra for CUDA (never both)") from None
    return ort


class OrtRunner:
    """Runs one stage graph. ``run`` binds inputs by name and returns outputs by name; an in-place
    output of the spec (``kv_out`` → ``kv``) is written into the caller's bound input buffer."""

    def __init__(self, path: str | Path, spec: StageSpec, providers: Sequence[str] | None = None,
                 threads: int | None = None):
        ort = import_ort()
        self.spec = spec
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        so.log_severity_level = 3
        wanted = list(providers or ["CPUExecutionProvider"])
        try:
            self.session = ort.InferenceSession(str(path), so, providers=wanted)
        except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, NoSuchFile, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"stage {spec.name}: ONNX Runtime cannot load {path}: {first}") from None
        self.provider = self.session.get_providers()[0]
        if self.provider != wanted[0]:
            log.warning("stage %s: asked for %s but ONNX Runtime runs it on %s", spec.name, wanted[0], self.provider)
        names = [i.name for i in self.session.get_inputs()]
        expect = [t.name for t in spec.inputs]
        if names != expect:
            raise BackendError(f"stage {spec.name}: graph {path} inputs {names} do not match the spec {expect}")
        self._ort = ort
        self.io = self.session.io_binding()
        self.path = Path(path)

    def run(self, feed: Mapping[str, np.ndarray], bound: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
        """``feed``: numpy inputs by name (dtype checked, never cast silently). ``bound``: OrtValues
        bound as an input *and* as the spec's in-place output of it (``kv`` and ``kv_out``)."""
        io = self.io
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        for t in self.spec.inputs:
            if bound and t.name in bound:
                io.bind_ortvalue_input(t.name, bound[t.name])
                continue
            if t.name not in feed:
                raise BackendError(f"stage {self.spec.name}: input {t.name!r} missing")
            x = feed[t.name]
            if x.dtype != t.np_dtype():
                raise BackendError(f"stage {self.spec.name}: input {t.name} is {x.dtype}, the graph takes {t.dtype}")
            io.bind_cpu_input(t.name, np.ascontiguousarray(x))
        aliased = set()
        for t in self.spec.outputs:  # in spec order: get_outputs() returns them in binding order
            src = self.spec.inplace.get(t.name)
            if bound and src in bound:
                io.bind_ortvalue_output(t.name, bound[src])
                aliased.add(t.name)
            else:
                io.bind_output(t.name, "cpu")
        self.session.run_with_iobinding(io)
        outs = io.get_outputs()
        return {t.name: (None if t.name in aliased else o.numpy()) for t, o in zip(self.spec.outputs, outs)}

    def ortvalue(self, array: np.ndarray):
        """Wrap a numpy array as an OrtValue sharing its memory (CPU), for in-place binding."""
        return self._ort.OrtValue.ortvalue_from_numpy(array)

    def new_cache(self, host: np.ndarray) -> OrtKVCache:
        """The spec's in-place input (the KV cache) as a buffer the graph updates in place."""
        (name,) = self.spec.inplace.values()
        return OrtKVCache(host, self.ortvalue(host), name)

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its memory when the last reference goes)."""
        self.io = self.session = None


class OrtKVCache:
    """The decode cache as one host array that the graph updates in place (``kv_out`` aliases
    ``kv``). ``bound`` is what ``OrtRunner.run`` takes."""

    def __init__(self, array: np.ndarray, value, name: str):
        self.array, self.bound = array, {name: value}

    def reorder(self, rows: np.ndarray, src: np.ndarray) -> None:
        """Beam row ``rows[i]`` becomes a copy of row ``src[i]``; only those rows are copied."""
        self.array[:, :, rows] = self.array[:, :, src]

    def close(self) -> None:
        self.bound.clear()
