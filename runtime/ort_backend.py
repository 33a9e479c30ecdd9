"""ONNX Runtime backend: one :class:`~.runners.StageRunner` per stage, bound by name from the spec.

``onnxruntime`` is imported here only (lazily, with a clear message naming the extra to install).
Session options are set on purpose: full graph optimization, intra-op threads from the caller (or
the machine), sequential execution. The provider actually in use is checked: onnxruntime-gpu falls
back to CPU silently when CUDA libraries are missing, and we report that instead of pretending.

On the CUDA provider a runner is *resident* (it gets a :class:`~.cuda_device.Device`, from
cuda-python): the decode step's KV cache is a ``DeviceKVCache``, each part bound by its device
address, the step's ``kv_new`` stays on the device and is copied device to device into each row's position,
``set_constants`` uploads once, and ``feedback`` outputs (the CFM's ``x``) stay on the device
between calls. Without it ONNX Runtime would copy the whole cache host to device on every step
(several times the bytes of the weights at 1000 codes) and each CFM constant on every step.
Resident mode runs the same way on the CPU provider, over host memory (``device_type="cpu"``):
that is how the tests check its control flow here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .cuda_device import CudaError, Device
from .device_cache import DeviceKVCache
from .kvcache import HostKVCache
from .runners import BackendError
from .spec import StageSpec

log = logging.getLogger(__name__)


def resident_device(providers: Sequence[str] | None) -> Device | None:
    """The device a runner keeps its cache, constants and fed-back outputs on: one for the CUDA
    provider when cuda-python is installed (the ``gpu`` extra has it), else None (host, with a
    warning on CUDA: every decode step then copies the whole cache to the device)."""
    if not providers or providers[0] != "CUDAExecutionProvider":
        return None
    try:
        return Device()
    except CudaError as e:
        log.warning("ONNX Runtime CUDA: %s; the KV cache stays on the host and every decode step copies it "
                    "to the device", e)
        return None


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("onnxruntime is not installed: install the `cpu` extra (pip install 'indextts-trt[cpu]') "
                           "or the `gpu` extra for CUDA (never both)") from None
    return ort


def default_threads() -> int:
    """ONNX Runtime's intra-op threads when the user names none: one per core."""
    return max(1, os.cpu_count() or 1)


class OrtRunner:
    """Runs one stage graph: inputs bound by name (their dtypes are the graph's, read from the
    session: fp32 graphs take float32, an fp16 graph's KV cache float16; a mismatch is an error,
    never a silent cast), outputs returned by name as numpy arrays."""

    def __init__(self, path: str | Path, spec: StageSpec, providers: Sequence[str] | None = None,
                 threads: int | None = None, device: Device | None = None):
        ort = import_ort()
        self.spec = spec
        self.dev = device  # resident mode (module docstring); the runner owns it and closes it
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads or default_threads()
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
            if device is not None:  # a GPU device's pointers must never be bound as host memory
                device.close()
                self.dev = device = None
        names = [i.name for i in self.session.get_inputs()]
        expect = [t.name for t in spec.inputs]
        if names != expect:
            raise BackendError(f"stage {spec.name}: graph {path} inputs {names} do not match the spec {expect}")
        io_values = list(self.session.get_inputs()) + list(self.session.get_outputs())
        odd = sorted({v.type for v in io_values} - set(_NP))
        if odd:  # bfloat16: ONNX Runtime's CPU provider has no bf16 kernels, and numpy no bf16 type
            raise BackendError(f"stage {spec.name}: {path} has {', '.join(odd)} inputs or outputs, which ONNX Runtime "
                               "cannot feed from numpy; run that precision with TensorRT")
        self.dtypes = {v.name: _NP[v.type] for v in io_values}
        self._ort = ort
        self.io = self.session.io_binding()
        self.path = Path(path)
        self._const: dict[str, np.ndarray] = {}
        self._kept: dict[str, np.ndarray] = {}
        self._cache_value = None  # (cache object, its version, OrtValues over its parts)
        self._parts = {n: j for j, n in enumerate(spec.cache.inputs)} if spec.cache else {}  # input → part
        # where resident inputs and outputs live: ONNX Runtime's name for the provider's device
        self.where = ("cuda", 0) if self.provider == "CUDAExecutionProvider" else ("cpu", 0)
        self.stream = device.stream() if device is not None else None
        self._new_ptr, self._new_bytes = 0, 0  # resident decode: the kv_new buffer

    def set_constants(self, feed: Mapping[str, np.ndarray]) -> None:
        """Inputs that stay the same for the calls that follow (the CFM's prompt, style, condition);
        resident: uploaded here, once."""
        self._const = {k: self._checked(k, v) for k, v in feed.items()}
        if self.dev is not None:
            self._const = {k: self._ort.OrtValue.ortvalue_from_numpy(v, *self.where) for k, v in self._const.items()}

    def clear_constants(self) -> None:
        self._const, self._kept = {}, {}

    def _checked(self, name: str, x) -> np.ndarray:
        x = np.ascontiguousarray(x)
        if x.dtype != self.dtypes[name]:
            raise BackendError(f"stage {self.spec.name}: input {name} is {x.dtype}, the graph takes {self.dtypes[name]}")
        return x

    def run(self, feed: Mapping[str, np.ndarray], *, cache=None, feedback: Mapping[str, str] | None = None,
            fetch=None) -> dict[str, np.ndarray]:
        """``feed``: numpy inputs by name; the constants set before and the outputs kept by the last
        call's ``feedback`` (output → the input it feeds) fill in the rest. ``cache``: the spec's
        KV cache (``HostKVCache``, or ``DeviceKVCache`` when resident), read in place; the step's
        new entries are written into it at each row's ``length`` position and not returned.
        ``fetch``: the outputs to return (all)."""
        io, spec, c = self.io, self.spec, self.spec.cache
        uses_cache = cache is not None and c is not None
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        for t in spec.inputs:
            if uses_cache and t.name in self._parts:
                self._bind_cache_part(t.name, cache, self._parts[t.name])
                continue
            x = feed.get(t.name)
            if x is None:
                x = self._kept.get(t.name, self._const.get(t.name))
                if x is None:
                    raise BackendError(f"stage {spec.name}: input {t.name!r} missing")
                if not isinstance(x, np.ndarray):  # resident: an OrtValue already where it runs
                    io.bind_ortvalue_input(t.name, x)
                    continue
            else:
                x = self._checked(t.name, x)
            io.bind_cpu_input(t.name, x)
        # resident: kv_new and fed-back outputs stay on the device; what the caller reads comes back
        stay = set()
        if self.dev is not None:
            stay = set(feedback or ()) | ({c.new} if uses_cache else set())
        for t in spec.outputs:  # in spec order: get_outputs() returns them in binding order
            if uses_cache and t.name == c.new and isinstance(cache, DeviceKVCache):
                io.bind_output(t.name, *self.where, cache.dtype, self._new_shape(cache), self._new_buffer(cache))
            else:
                io.bind_output(t.name, *(self.where if t.name in stay else ("cpu", 0)))
        if self.dev is not None:
            self.dev.sync(self.stream)  # the cache copies of the last step are done before the graph reads it
        self.session.run_with_iobinding(io)
        values = dict(zip((t.name for t in spec.outputs), io.get_outputs()))
        if uses_cache:
            new = values.pop(c.new)
            if isinstance(cache, DeviceKVCache):
                cache.write_device(new.data_ptr(), np.asarray(feed[c.length]))
            else:
                cache.write(new.numpy(), feed[c.length])
        if self.dev is not None:
            self._kept = {dst: values[src] for src, dst in (feedback or {}).items()}
            want = [n for n in values if fetch is None or n in fetch]
            return {n: values[n].numpy() for n in want}
        outs = {n: v.numpy() for n, v in values.items()}
        self._kept = {dst: outs[src] for src, dst in (feedback or {}).items()}
        return outs if fetch is None else {k: outs[k] for k in fetch}

    def _new_shape(self, cache) -> list[int]:
        """``kv_new``'s spec shape at the cache's sizes (its named dims read off a part's shape)."""
        c = self.spec.cache
        part = self.spec.input(c.inputs[0])
        sizes = {d: n for d, n in zip(part.shape, cache.shape[2:]) if isinstance(d, str)}
        return list(self.spec.shape(self.spec.output(c.new), sizes))

    def _new_buffer(self, cache) -> int:
        """The device buffer ``kv_new`` is written to: one, grown when the rows outgrow it (the
        step then allocates nothing, and the copy into the cache reads our own memory)."""
        need = int(np.prod(self._new_shape(cache))) * cache.dtype.itemsize
        if need > self._new_bytes:
            self.dev.free(self._new_ptr)
            self._new_ptr, self._new_bytes = self.dev.malloc(need, zero=False, stream=self.stream), need
        return self._new_ptr

    def _bind_cache_part(self, name: str, cache, j: int) -> None:
        if isinstance(cache, DeviceKVCache):  # the device buffer itself, by the part's address
            self.io.bind_input(name, *self.where, cache.dtype, list(cache.shape[2:]), cache.part_ptr(j))
        else:
            self.io.bind_ortvalue_input(name, self._cache_ortvalues(cache)[j])

    def _cache_ortvalues(self, cache) -> list:
        """OrtValues over the host cache's parts, in place; made again when the cache is replaced."""
        if self._cache_value is None or self._cache_value[0] is not cache or self._cache_value[1] != cache.version:
            values = [self._ort.OrtValue.ortvalue_from_numpy(cache.part(j)) for j in range(len(self._parts))]
            self._cache_value = (cache, cache.version, values)
        return self._cache_value[2]

    def new_cache(self, rows: int, capacity: int) -> HostKVCache | DeviceKVCache:
        """An empty cache for ``rows`` rows in the graph's cache dtype (on the device when resident)."""
        layers, heads, hd = self.spec.cache_dims()
        dtype = self.dtypes[self.spec.cache.inputs[0]]
        if self.dev is not None:
            return DeviceKVCache(self.dev, self.stream, layers, rows, heads, capacity, hd, dtype)
        return HostKVCache(layers, rows, heads, capacity, hd, dtype)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its memory when the last reference goes) and, when
        resident, free the device's stream and whatever a cache left on it."""
        self.io = self.session = None
        self._const, self._kept, self._cache_value = {}, {}, None
        if self.dev is not None:
            self.dev.close()


_NP = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16),
       "tensor(int64)": np.dtype(np.int64), "tensor(int32)": np.dtype(np.int32), "tensor(bool)": np.dtype(np.bool_)}
