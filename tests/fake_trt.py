"""Stand-ins for ``tensorrt`` and cuda-python's runtime, for the TensorRT backend's host-logic tests.

They are NOT TensorRT: an "engine" here is a JSON file naming an ONNX graph that ONNX Runtime runs,
and "device memory" is host memory. What they make checkable is the backend's own logic: which
buffers it allocates and frees, what it binds where, which bytes its 2-D/3-D copies move, which
profile it picks, what a CUDA graph replays. Every copy really moves bytes (ctypes.memmove), so a
wrong pitch or offset gives wrong numbers, and every CUDA call returns an error code that the
backend must check.
"""

from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path

import numpy as np


# ----------------------------------------------------------------------------- the CUDA runtime


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorStreamCaptureUnsupported = 900


def device_view(ptr: int, shape, dtype) -> np.ndarray:
    """A stand-in device allocation (host memory) as a numpy array, to compare with a host result."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_uint8 * n).from_address(ptr), dtype).reshape(shape)


class FakeCudart:
    """cudaMalloc hands out host memory; copies are memmoves; streams run synchronously, except
    while capturing, when the fake engine's enqueues are recorded for the graph instead."""

    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2,
                                           cudaMemcpyDeviceToDevice=3)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
    cudaError_t = cudaError_t

    def __init__(self, fail_capture: bool = False):
        self.blocks: dict[int, np.ndarray] = {}
        self.calls: list[str] = []
        self.capturing: dict[int, list] = {}
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self._next = 1
        self.fail_capture = fail_capture

    def _id(self) -> int:
        self._next += 1
        return self._next

    def cudaMalloc(self, n):
        self.calls.append("malloc")
        buf = np.zeros(int(n), np.uint8)
        self.blocks[buf.ctypes.data] = buf
        return cudaError_t.cudaSuccess, buf.ctypes.data

    def cudaFree(self, ptr):
        self.calls.append("free")
        if self.blocks.pop(int(ptr), None) is None:
            return (cudaError_t.cudaErrorMemoryAllocation,)
        return (cudaError_t.cudaSuccess,)

    def _inside(self, ptr: int, n: int) -> None:  # a device address must lie inside an allocation
        if not any(b <= ptr and ptr + n <= b + a.nbytes for b, a in self.blocks.items()):
            raise AssertionError(f"device access outside every allocation: {ptr:#x} + {n}")

    def cudaMemsetAsync(self, ptr, value, n, stream):
        self._inside(ptr, n)
        ctypes.memset(ptr, value, n)
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        self.calls.append(f"memcpy{kind}")
        self._inside(dst if kind != 2 else src, n)
        ctypes.memmove(dst, src, n)
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpy2DAsync(self, dst, dpitch, src, spitch, width, height, kind, stream):
        self.calls.append("memcpy2d")
        for r in range(height):
            self._inside(dst + r * dpitch, width)
            self._inside(src + r * spitch, width)
            ctypes.memmove(dst + r * dpitch, src + r * spitch, width)
        return (cudaError_t.cudaSuccess,)

    # cudaMemcpy3DAsync and its parameter structs
    class cudaMemcpy3DParms:
        srcPtr = dstPtr = extent = kind = None

    @staticmethod
    def make_cudaPitchedPtr(ptr, pitch, xsize, ysize):
        return types.SimpleNamespace(ptr=ptr, pitch=pitch, xsize=xsize, ysize=ysize)

    @staticmethod
    def make_cudaExtent(width, height, depth):
        return types.SimpleNamespace(width=width, height=height, depth=depth)

    def cudaMemcpy3DAsync(self, p, stream):
        self.calls.append("memcpy3d")
        for z in range(p.extent.depth):
            for y in range(p.extent.height):
                d = p.dstPtr.ptr + (z * p.dstPtr.ysize + y) * p.dstPtr.pitch
                s = p.srcPtr.ptr + (z * p.srcPtr.ysize + y) * p.srcPtr.pitch
                self._inside(d, p.extent.width)
                self._inside(s, p.extent.width)
                ctypes.memmove(d, s, p.extent.width)
        return (cudaError_t.cudaSuccess,)

    def cudaStreamCreate(self):
        return cudaError_t.cudaSuccess, self._id()

    def cudaStreamSynchronize(self, s):
        return (cudaError_t.cudaSuccess,)

    def cudaStreamDestroy(self, s):
        self.calls.append("stream_destroy")
        return (cudaError_t.cudaSuccess,)

    def cudaStreamBeginCapture(self, s, mode):
        if self.fail_capture:
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        self.capturing[s] = []
        return (cudaError_t.cudaSuccess,)

    def cudaStreamEndCapture(self, s):
        g = self._id()
        self.graphs[g] = self.capturing.pop(s)
        return cudaError_t.cudaSuccess, g

    def cudaGraphInstantiate(self, g, flags):
        e = self._id()
        self.execs[e] = list(self.graphs[g])
        return cudaError_t.cudaSuccess, e

    def cudaGraphDestroy(self, g):
        self.graphs.pop(g)
        return (cudaError_t.cudaSuccess,)

    def cudaGraphExecDestroy(self, e):
        self.execs.pop(e)
        return (cudaError_t.cudaSuccess,)

    def cudaGraphLaunch(self, e, s):
        self.calls.append("graph_launch")
        for work in self.execs[e]:
            work()
        return (cudaError_t.cudaSuccess,)


# ----------------------------------------------------------------------------- tensorrt


def write_engine(path: Path, onnx_path: Path, spec, profiles: list[dict]) -> Path:
    """A stand-in engine file: the ONNX graph the fake runs, and per profile (min, opt, max) shapes."""
    path.write_text(json.dumps({"onnx": str(onnx_path), "stage": spec.name, "profiles": profiles}))
    return path


class _Dtype(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT64 = np.int64


def make_tensorrt(cudart: FakeCudart, specs: dict):
    """A ``tensorrt`` module stand-in; ``specs``: stage name → StageSpec (for output shapes)."""
    import onnxruntime as ort

    class Engine:
        def __init__(self, blob: bytes):
            d = json.loads(blob)
            self.spec = specs[d["stage"]]
            self.sess = ort.InferenceSession(d["onnx"], providers=["CPUExecutionProvider"])
            self.profiles = d["profiles"]
            kinds = {"tensor(float)": _Dtype.FLOAT, "tensor(float16)": _Dtype.HALF, "tensor(int64)": _Dtype.INT64}
            self.types = {v.name: kinds[v.type] for v in self.sess.get_inputs() + self.sess.get_outputs()}
            self.names = [v.name for v in self.sess.get_inputs() + self.sess.get_outputs()]
            self.num_io_tensors = len(self.names)
            self.num_optimization_profiles = len(self.profiles)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_dtype(self, n):
            return self.types[n]

        def get_tensor_profile_shape(self, n, p):
            return [tuple(s) for s in self.profiles[p][n]]

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.e, self.shapes, self.addr, self.profile = engine, {}, {}, None

        def set_optimization_profile_async(self, p, stream):
            self.profile = p
            return 0 <= p < len(self.e.profiles)

        def set_input_shape(self, n, shape):
            lo, _, hi = self.e.profiles[self.profile][n]
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[n] = tuple(shape)
            return True

        def set_tensor_address(self, n, ptr):
            self.addr[n] = int(ptr)
            return True

        def get_tensor_shape(self, n):
            spec = self.e.spec
            sizes = spec.sizes_of({k: np.empty(v, np.uint8) for k, v in self.shapes.items()})
            t = next(t for t in spec.inputs + spec.outputs if t.name == n)
            return spec.shape(t, sizes)

        def execute_async_v3(self, stream):
            snap = (dict(self.shapes), dict(self.addr))  # a graph replays the addresses of its capture
            work = lambda: self._run(*snap)  # noqa: E731
            if stream in cudart.capturing:
                cudart.capturing[stream].append(work)
            else:
                work()
            return True

        def _run(self, shapes, addr):
            e = self.e
            feed = {}
            for i in e.sess.get_inputs():
                dt = np.dtype(e.types[i.name].value)
                n = int(np.prod(shapes[i.name])) * dt.itemsize
                buf = (ctypes.c_uint8 * n).from_address(addr[i.name])
                feed[i.name] = np.frombuffer(buf, dt).reshape(shapes[i.name]).copy()
            for o, v in zip(e.sess.get_outputs(), e.sess.run(None, feed)):
                v = np.ascontiguousarray(v)
                ctypes.memmove(addr[o.name], v.ctypes.data, v.nbytes)

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine(blob)

    return types.SimpleNamespace(__version__="0.0-fake", Logger=Logger, Runtime=Runtime,
                                 nptype=lambda dt: dt.value, DataType=_Dtype)


__all__ = ["FakeCudart", "make_tensorrt", "write_engine"]
