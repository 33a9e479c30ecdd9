"""TensorRT backend: the ``StageRunner`` interface over a serialized engine.

NEVER RUN AGAINST A REAL TENSORRT HERE: TensorRT cannot be installed on this project's machines.
The control flow below is exercised by host-logic tests with stand-in ``tensorrt`` and CUDA
modules (``tests/test_trt_host_logic.py``), which check what is bound, copied, captured and freed —
no evidence that TensorRT itself accepts any of it.

What the runner does, and why:
- everything about the engine is read from the engine: tensor names, I/O modes, dtypes, and each
  optimization profile's (min, opt, max) shapes; a request picks the tightest covering profile;
- every output buffer (and every input the host feeds) is allocated once, at the largest shape any
  profile allows, so no request allocates; every TensorRT and CUDA result is checked;
- ``set_constants`` copies inputs that stay fixed (the CFM's prompt, style, condition) to the device
  once; ``feedback={"x_next": "x"}`` swaps the two device buffers so the CFM's ``x`` never leaves
  the device until the last step's ``fetch``;
- the decode step reads the cache in place (``DeviceKVCache``, one device buffer, each (layer,
  key/value) part bound at its own address, no ping-pong) and its small ``kv_new`` output is
  copied into the cache at each row's position: one 2-D copy when the rows share a position (one
  request), one 3-D copy per run of rows otherwise;
- the decode step is captured in a CUDA graph per (profile, shapes, addresses) after a warm-up
  enqueue; a failed capture logs once and falls back to plain enqueues;
- ``close()`` frees the buffers, caches, graphs, the context and the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .cuda_device import CudaError, Device
from .device_cache import DeviceKVCache
from .engine_plan import select_profile_shapes
from .gpu import import_tensorrt
from .runners import BackendError
from .spec import StageSpec

log = logging.getLogger(__name__)


class TrtRunner:
    def __init__(self, engine_path: str | Path, spec: StageSpec, plan_entry: dict | None = None,
                 use_cuda_graph: bool = True, device: Device | None = None):
        trt = import_tensorrt()
        self.trt, self.spec = trt, spec
        self._own_device = device is None
        self.dev = device or Device()
        self.provider = f"TensorRT {trt.__version__}"
        self.logger = trt.Logger(trt.Logger.WARNING)
        blob = Path(engine_path).read_bytes()
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(blob)
        if self.engine is None:
            raise BackendError(f"stage {spec.name}: TensorRT could not deserialize {engine_path}")
        self.ctx = self.engine.create_execution_context()
        if self.ctx is None:
            raise BackendError(f"stage {spec.name}: TensorRT could not create an execution context for {engine_path}")
        self.stream = self.dev.stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        want = [t.name for t in spec.inputs + spec.outputs]
        if sorted(names) != sorted(want):
            raise BackendError(f"stage {spec.name}: engine tensors {names} do not match the spec {want}")
        self.inputs = [t.name for t in spec.inputs]
        self.outputs = [t.name for t in spec.outputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.profiles = [{n: tuple(tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(n, p))
                          for n in self.inputs} for p in range(self.engine.num_optimization_profiles)]
        self.profile = -1
        self.cache_spec = spec.cache
        # the cache parts are bound at the cache's own addresses, never buffers of the runner's
        self._parts = {n: j for j, n in enumerate(self.cache_spec.inputs)} if self.cache_spec else {}
        own = [n for n in names if n not in self._parts]
        self.capacity = {n: self._max_bytes(n) for n in own}
        self.buffers = {n: self.dev.malloc(self.capacity[n], stream=self.stream) for n in own}
        self._const: set[str] = set()  # inputs whose device buffer holds a constant
        self._kept: set[str] = set()  # inputs whose device buffer holds the last call's fed-back output
        self._shapes: dict[str, tuple] = {}  # the last shape set for each input
        self.use_cuda_graph = use_cuda_graph and self.cache_spec is not None  # the launch-bound stage
        self._graphs: dict[tuple, int] = {}

    def _max_bytes(self, name: str) -> int:
        """The largest this tensor gets over every profile (outputs: the spec's shape at the
        profile's max input sizes)."""
        spec = self.spec
        sizes: dict[str, int] = {}
        for p in self.profiles:
            for t in spec.inputs:
                for d, n in zip(t.shape, p[t.name][2]):
                    if isinstance(d, str):
                        sizes[d] = max(sizes.get(d, 0), int(n))
        sizes = spec.resolve({k: v for k, v in sizes.items() if k not in spec.derived})
        t = next(t for t in spec.inputs + spec.outputs if t.name == name)
        return int(np.prod(spec.shape(t, sizes), dtype=np.int64)) * self.dtypes[name].itemsize

    # ------------------------------------------------------------------ constants, caches

    def set_constants(self, feed: Mapping[str, np.ndarray]) -> None:
        """Copy inputs that stay the same for the calls that follow to the device, once."""
        for name, x in feed.items():
            self._put(name, x)
        self._const = set(feed)
        self.dev.sync(self.stream)

    def clear_constants(self) -> None:
        self._const, self._kept = set(), set()

    def new_cache(self, rows: int, capacity: int) -> DeviceKVCache:
        layers, heads, hd = self.spec.cache_dims()
        return DeviceKVCache(self.dev, self.stream, layers, rows, heads, capacity, hd,
                             self.dtypes[self.cache_spec.inputs[0]])

    # ------------------------------------------------------------------ running

    def _put(self, name: str, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x)
        if x.dtype != self.dtypes[name]:
            raise BackendError(f"stage {self.spec.name}: input {name} is {x.dtype}, the engine takes {self.dtypes[name]}")
        if x.nbytes > self.capacity[name]:
            raise BackendError(f"stage {self.spec.name}: input {name} of {x.shape} exceeds the engine's profiles")
        self.dev.h2d(self.buffers[name], x, self.stream)
        self._shapes[name] = tuple(x.shape)

    def run(self, feed: Mapping[str, np.ndarray], *, cache: DeviceKVCache | None = None,
            feedback: Mapping[str, str] | None = None, fetch=None) -> dict[str, np.ndarray]:
        ctx, c = self.ctx, self.cache_spec
        shapes = dict(self._shapes)
        for name in self.inputs:
            if cache is not None and name in self._parts:
                shapes[name] = cache.shape[2:]
            elif name in feed:
                shapes[name] = tuple(np.shape(feed[name]))
            elif name not in self._const and name not in self._kept:
                raise BackendError(f"stage {self.spec.name}: input {name!r} missing")
        try:
            p = select_profile_shapes(self.profiles, {n: shapes[n] for n in self.inputs})
        except ValueError as e:
            raise BackendError(f"stage {self.spec.name}: {e}") from None
        uses_cache = cache is not None and c is not None
        for name in self.inputs:
            if uses_cache and name in self._parts:
                self._shapes[name] = cache.shape[2:]
            elif name in feed:
                self._put(name, feed[name])
        if p != self.profile:
            if not ctx.set_optimization_profile_async(p, self.stream):
                raise BackendError(f"stage {self.spec.name}: TensorRT refused optimization profile {p}")
            self.profile = p
        for name in self.inputs:
            if not ctx.set_input_shape(name, self._shapes[name]):
                raise BackendError(f"stage {self.spec.name}: TensorRT refused shape {self._shapes[name]} for {name}")
            addr = cache.part_ptr(self._parts[name]) if uses_cache and name in self._parts else self.buffers[name]
            if not ctx.set_tensor_address(name, addr):
                raise BackendError(f"stage {self.spec.name}: TensorRT refused the address of {name}")
        out_shapes = {}
        for name in self.outputs:
            out_shapes[name] = tuple(int(d) for d in ctx.get_tensor_shape(name))
            if not ctx.set_tensor_address(name, self.buffers[name]):
                raise BackendError(f"stage {self.spec.name}: TensorRT refused the address of {name}")
        self._execute(cache)
        if uses_cache:
            cache.write_device(self.buffers[c.new], np.asarray(feed[c.length]))
        want = [n for n in self.outputs if (fetch is None or n in fetch) and not (c is not None and n == c.new)]
        outs = {n: np.empty(out_shapes[n], self.dtypes[n]) for n in want}
        for n in want:
            self.dev.d2h(outs[n], self.buffers[n], self.stream)
        self.dev.sync(self.stream)
        self._kept = set()
        for src, dst in (feedback or {}).items():  # the output's buffer becomes the input's: no copy
            self.buffers[src], self.buffers[dst] = self.buffers[dst], self.buffers[src]
            self.capacity[src], self.capacity[dst] = self.capacity[dst], self.capacity[src]
            self._shapes[dst] = out_shapes[src]
            self._kept.add(dst)
        return outs

    def _execute(self, cache) -> None:
        if not self.use_cuda_graph or cache is None:
            if not self.ctx.execute_async_v3(self.stream):
                raise BackendError(f"stage {self.spec.name}: TensorRT execution failed")
            return
        key = (self.profile, tuple(sorted(self._shapes.items())), cache.ptr,
               tuple(sorted(self.buffers.items())))  # a graph replays fixed shapes and addresses
        exe = self._graphs.get(key)
        if exe is None:
            # TensorRT must have run once with these shapes before a capture (it may allocate lazily)
            if not self.ctx.execute_async_v3(self.stream):
                raise BackendError(f"stage {self.spec.name}: TensorRT execution failed")
            try:
                self._graphs[key] = self.dev.capture(self.stream, lambda: self.ctx.execute_async_v3(self.stream))
            except CudaError as e:
                log.warning("stage %s: CUDA graph capture failed (%s); running without graphs", self.spec.name, e)
                self.use_cuda_graph = False
            return  # this call's work ran in the warm-up enqueue
        self.dev.launch(exe, self.stream)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for exe in self._graphs.values():
            self.dev.drop_graph(exe)
        self._graphs.clear()
        for ptr in self.buffers.values():
            self.dev.free(ptr)
        self.buffers.clear()
        self.ctx = self.engine = None
        if self._own_device:  # its stream, and anything a cache left behind
            self.dev.close()


__all__ = ["TrtRunner"]
