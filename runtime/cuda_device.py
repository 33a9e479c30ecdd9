"""The CUDA runtime calls the TensorRT backend makes, each result checked, each resource tracked.

cuda-python returns errors (it does not raise): every call here goes through :func:`check`, which
raises :class:`CudaError` naming the call. A :class:`Device` remembers every allocation, stream and
CUDA graph it made, so :meth:`Device.close` frees all of them and the host-logic tests can count
allocations against frees. Imported only with the TensorRT backend (``cuda-python``, the ``trt``
extra).
"""

from __future__ import annotations

import numpy as np


class CudaError(RuntimeError):
    pass


def check(res, what: str):
    """cuda-python's ``(err, *values)`` → the values, or CudaError naming ``what`` and the error."""
    err, *rest = res if isinstance(res, tuple) else (res,)
    if int(err) != 0:
        raise CudaError(f"{what} failed: {getattr(err, 'name', err)}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


class Device:
    """One process's view of a GPU: allocations, copies, streams and CUDA graphs, all tracked."""

    def __init__(self, cudart=None):
        if cudart is None:
            from .gpu import cuda_runtime

            cudart = cuda_runtime()
            if cudart is None:
                raise CudaError("cuda-python is not installed: install the trt extra (pip install 'indextts-trt[trt]')")
        self.rt = cudart
        self.live: dict[int, int] = {}  # device pointer -> bytes
        self.streams: set[int] = set()
        self.graphs: set[int] = set()  # instantiated graph executables

    # ------------------------------------------------------------------ memory

    def malloc(self, nbytes: int, zero: bool = True, stream=0) -> int:
        ptr = int(check(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})"))
        self.live[ptr] = int(nbytes)
        if zero:  # masked cache positions must hold numbers: garbage could be NaN, and NaN·0 is NaN
            check(self.rt.cudaMemsetAsync(ptr, 0, max(int(nbytes), 1), stream), "cudaMemsetAsync")
        return ptr

    def free(self, ptr: int) -> None:
        if ptr and self.live.pop(ptr, None) is not None:
            check(self.rt.cudaFree(ptr), "cudaFree")

    def h2d(self, dst: int, src: np.ndarray, stream) -> None:
        src = np.ascontiguousarray(src)
        check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes,
                                      self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync H2D")

    def d2h(self, dst: np.ndarray, src: int, stream) -> None:
        check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes,
                                      self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync D2H")

    def copy2d(self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, stream) -> None:
        """``height`` rows of ``width`` bytes, device to device, with their own pitches."""
        check(self.rt.cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height,
                                        self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream), "cudaMemcpy2DAsync")

    def copy3d(self, dst: int, dpitch: int, dslice: int, src: int, spitch: int, sslice: int, width: int,
               height: int, depth: int, stream) -> None:
        """``depth`` slices of ``height`` rows of ``width`` bytes; slice strides are whole numbers of
        rows (``dslice``/``sslice`` rows per slice), as cudaPitchedPtr describes them."""
        rt = self.rt
        p = rt.cudaMemcpy3DParms()
        p.srcPtr = rt.make_cudaPitchedPtr(src, spitch, width, sslice)
        p.dstPtr = rt.make_cudaPitchedPtr(dst, dpitch, width, dslice)
        p.extent = rt.make_cudaExtent(width, height, depth)
        p.kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        check(rt.cudaMemcpy3DAsync(p, stream), "cudaMemcpy3DAsync")

    # ------------------------------------------------------------------ streams and graphs

    def stream(self) -> int:
        s = check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self.streams.add(s)
        return s

    def sync(self, stream) -> None:
        check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def capture(self, stream, enqueue) -> int:
        """A graph executable of what ``enqueue()`` puts on ``stream``; the captured graph itself is
        destroyed right after instantiation (trtexec's order), the executable kept until close."""
        rt = self.rt
        check(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            ok = enqueue()
        finally:
            graph = check(rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            if not ok:
                raise CudaError("the enqueue inside the capture failed")
            exe = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
        self.graphs.add(exe)
        return exe

    def launch(self, exe, stream) -> None:
        check(self.rt.cudaGraphLaunch(exe, stream), "cudaGraphLaunch")

    def drop_graph(self, exe) -> None:
        if exe in self.graphs:
            self.graphs.discard(exe)
            check(self.rt.cudaGraphExecDestroy(exe), "cudaGraphExecDestroy")

    def close(self) -> None:
        """Free everything this device object still holds."""
        for exe in list(self.graphs):
            self.drop_graph(exe)
        for ptr in list(self.live):
            self.free(ptr)
        for s in list(self.streams):
            self.streams.discard(s)
            check(self.rt.cudaStreamDestroy(s), "cudaStreamDestroy")


__all__ = ["Device", "CudaError", "check"]
