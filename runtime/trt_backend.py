"""TensorRT backend: the same runner interface as ``OrtStage`` over a serialized engine.

THIN ON PURPOSE, AND NEVER RUN HERE: TensorRT cannot be installed on this project's development
and CI machines, so every line below that touches ``tensorrt`` or ``cuda`` is untested against a
real engine (the plan it follows, the buffer plan and the profile choice are tested on CPU).

- named tensor binding, device buffers that grow to the request's size and are reused (the
  decode step's shapes are constant within a segment, so it never allocates per step);
- the optimization profile is chosen per request (``select_profile``: the tightest covering one);
- the KV cache lives on the device in two buffers, ping-ponged between ``kv`` and ``kv_out``
  (TensorRT does not allow an input and an output to alias); beam reordering copies only the
  changed beam rows, device to device, one 2-D copy per row;
- the decode step is captured in a CUDA graph per (shapes, cache buffer) and replayed; only the
  small token/position inputs are copied in and the (beams, V) logits copied out per step;
- one CUDA stream per stage runner (a pipeline per request).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .engine_plan import Profile, select_profile
from .gpu import import_tensorrt
from .spec import StageSpec


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _ok(res):
    err, *rest = res if isinstance(res, tuple) else (res,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


class DeviceBuffer:
    def __init__(self, cudart, nbytes: int = 0):
        self.cudart, self.ptr, self.nbytes = cudart, 0, 0
        self.ensure(nbytes)

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            if self.ptr:
                _ok(self.cudart.cudaFree(self.ptr))
            self.ptr = int(_ok(self.cudart.cudaMalloc(nbytes)))
            self.nbytes = nbytes
        return self.ptr

    def free(self):
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr, self.nbytes = 0, 0


class TrtKVCache:
    """Two device copies of the cache; ``cur`` is what the next step reads."""

    def __init__(self, stage: TrtRunner, host: np.ndarray):
        c = stage.cudart
        self.stage, self.shape, self.dtype = stage, host.shape, host.dtype
        self.bufs = [DeviceBuffer(c, host.nbytes), DeviceBuffer(c, host.nbytes)]
        self.cur = 0
        _ok(c.cudaMemcpyAsync(self.bufs[0].ptr, host.ctypes.data, host.nbytes,
                              c.cudaMemcpyKind.cudaMemcpyHostToDevice, stage.stream))
        _ok(c.cudaStreamSynchronize(stage.stream))
        self.bound = {"kv": self}

    def reorder(self, rows: np.ndarray, src: np.ndarray) -> None:
        """Beam row ``rows[i]`` becomes a copy of row ``src[i]``. The source rows are first
        snapshotted into the spare buffer (a reorder may read a row it also overwrites); the spare
        is scratch until the next step writes all of it as ``kv_out``."""
        c, (layers, two, beams) = self.stage.cudart, self.shape[:3]
        row = int(np.prod(self.shape[3:])) * self.dtype.itemsize  # one beam's block in one (layer, k/v)
        pitch = beams * row
        a, b = self.bufs[self.cur].ptr, self.bufs[1 - self.cur].ptr
        # snapshot the source rows into the spare buffer first: a reorder may read a row it also writes
        for s in sorted(set(int(x) for x in src)):
            _ok(c.cudaMemcpy2DAsync(b + s * row, pitch, a + s * row, pitch, row, layers * two,
                                    c.cudaMemcpyKind.cudaMemcpyDeviceToDevice, self.stage.stream))
        for r, s in zip(rows, src):
            _ok(c.cudaMemcpy2DAsync(a + int(r) * row, pitch, b + int(s) * row, pitch, row, layers * two,
                                    c.cudaMemcpyKind.cudaMemcpyDeviceToDevice, self.stage.stream))

    def free(self):
        for b in self.bufs:
            b.free()


class TrtRunner:
    def __init__(self, engine_path: str | Path, spec: StageSpec, plan_entry: dict, use_cuda_graph: bool = True):
        trt = import_tensorrt()
        self.trt, self.cudart, self.spec = trt, _cudart(), spec
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"stage {spec.name}: TensorRT could not deserialize {engine_path}")
        self.ctx = self.engine.create_execution_context()
        self.stream = _ok(self.cudart.cudaStreamCreate())
        self.profiles = [Profile(**p) for p in plan_entry["profiles"]]
        self.profile = -1
        self.buffers = {t.name: DeviceBuffer(self.cudart) for t in spec.inputs + spec.outputs}
        self.provider = f"TensorRT {trt.__version__}"
        self.use_cuda_graph = use_cuda_graph and bool(spec.inplace)
        self._graphs: dict[tuple, object] = {}

    def new_cache(self, host: np.ndarray) -> TrtKVCache:
        return TrtKVCache(self, host)

    def _sizes(self, feed: Mapping[str, np.ndarray], bound) -> dict[str, int]:
        sizes = {}
        for t in self.spec.inputs:
            arr = bound[t.name] if bound and t.name in bound else feed[t.name]
            for d, n in zip(t.shape, arr.shape):
                if isinstance(d, str):
                    sizes[d] = int(n)
        return sizes

    def run(self, feed: Mapping[str, np.ndarray], bound: Mapping[str, object] | None = None) -> dict:
        c, ctx, s = self.cudart, self.ctx, self.stream
        sizes = self._sizes(feed, bound)
        p = select_profile(self.profiles, sizes)
        if p != self.profile:
            ctx.set_optimization_profile_async(p, s)
            self.profile = p
        cache = (bound or {}).get("kv")
        for t in self.spec.inputs:
            if cache is not None and t.name == "kv":
                ctx.set_input_shape(t.name, cache.shape)
                ctx.set_tensor_address(t.name, cache.bufs[cache.cur].ptr)
                continue
            x = np.ascontiguousarray(feed[t.name])
            if x.dtype != t.np_dtype():
                raise RuntimeError(f"stage {self.spec.name}: input {t.name} is {x.dtype}, the engine takes {t.dtype}")
            ptr = self.buffers[t.name].ensure(max(x.nbytes, 1))
            _ok(c.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, c.cudaMemcpyKind.cudaMemcpyHostToDevice, s))
            ctx.set_input_shape(t.name, x.shape)
            ctx.set_tensor_address(t.name, ptr)
        shapes, outs = {}, {}
        for t in self.spec.outputs:
            if cache is not None and t.name == "kv_out":
                ctx.set_tensor_address(t.name, cache.bufs[1 - cache.cur].ptr)
                continue
            shape = tuple(ctx.get_tensor_shape(t.name))
            shapes[t.name] = shape
            nbytes = int(np.prod(shape, dtype=np.int64)) * t.np_dtype().itemsize
            ctx.set_tensor_address(t.name, self.buffers[t.name].ensure(max(nbytes, 1)))
        self._execute(sizes, cache)
        for t in self.spec.outputs:
            if t.name in shapes:
                out = np.empty(shapes[t.name], t.np_dtype())
                _ok(c.cudaMemcpyAsync(out.ctypes.data, self.buffers[t.name].ptr, out.nbytes,
                                      c.cudaMemcpyKind.cudaMemcpyDeviceToHost, s))
                outs[t.name] = out
            else:
                outs[t.name] = None
        _ok(c.cudaStreamSynchronize(s))
        if cache is not None:
            cache.cur = 1 - cache.cur  # the step wrote the other buffer: it is the cache now
        return outs

    def _execute(self, sizes: dict, cache) -> None:
        c, s = self.cudart, self.stream
        if not self.use_cuda_graph or cache is None:
            if not self.ctx.execute_async_v3(s):
                raise RuntimeError(f"stage {self.spec.name}: TensorRT execution failed")
            return
        key = (tuple(sorted(sizes.items())), self.profile, cache.bufs[cache.cur].ptr,
               tuple(b.ptr for b in self.buffers.values()))  # a graph replays fixed addresses
        graph = self._graphs.get(key)
        if graph is None:
            # TensorRT must run once with these shapes before a capture (it may allocate lazily)
            if not self.ctx.execute_async_v3(s):
                raise RuntimeError(f"stage {self.spec.name}: TensorRT execution failed")
            _ok(c.cudaStreamSynchronize(s))
            _ok(c.cudaStreamBeginCapture(s, c.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            self.ctx.execute_async_v3(s)
            g = _ok(c.cudaStreamEndCapture(s))
            self._graphs[key] = _ok(c.cudaGraphInstantiate(g, 0))
            return  # this call's work ran in the warm-up execution above
        _ok(c.cudaGraphLaunch(graph, s))


    def close(self) -> None:
        for b in self.buffers.values():
            b.free()
        self.buffers.clear()


__all__ = ["TrtRunner", "TrtKVCache", "DeviceBuffer"]
