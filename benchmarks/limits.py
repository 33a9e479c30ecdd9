"""The machine's measured ceilings, for "fraction of the physical limit" figures.

Memory bandwidth: copies of a buffer much larger than the caches, split over the same number of
threads the backends use (numpy's copy releases the GIL), counting read + write bytes.
Matrix-multiply rate: float32 GEMM through numpy's BLAS and through ONNX Runtime, the faster of the
two. Best of several tries: a ceiling, not a typical figure. On a GPU run, these describe the host only.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def memory_bandwidth(threads: int, mib: int = 512, tries: int = 5) -> float:
    """Bytes per second (read + write) of a large parallel copy."""
    n = mib * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(n), threads)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts if p.size]
    del parts

    def copy(b):
        np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]])

    best = float("inf")
    with ThreadPoolExecutor(len(bounds)) as ex:
        list(ex.map(copy, bounds))  # fault the pages in
        for _ in range(tries):
            t0 = time.perf_counter()
            list(ex.map(copy, bounds))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def matmul_rate(n: int = 2048, tries: int = 5) -> float:
    """FLOP/s of an n×n float32 GEMM (2n³ FLOPs) through numpy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return 2 * n**3 / _best(lambda: a @ b, tries)


def matmul_rate_ort(n: int, threads: int, tries: int = 5) -> float | None:
    """The same GEMM through ONNX Runtime's own kernels (MLAS may use wider vectors than the BLAS
    numpy was built with; the ceiling is the faster of the two)."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {x: rng.standard_normal((n, n), dtype=np.float32) for x in ("a", "b")}
    del onnx
    return 2 * n**3 / _best(lambda: sess.run(None, feed), tries)


def _best(fn, tries: int) -> float:
    fn()
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(threads: int, quick: bool = False) -> dict:
    threads = threads or os.cpu_count() or 1
    n = 512 if quick else 2048
    rates = {"numpy": matmul_rate(n)}
    ort_rate = matmul_rate_ort(n, threads)
    if ort_rate:
        rates["onnxruntime"] = ort_rate
    return {"threads": threads,
            "memory_bandwidth_bytes_per_s": memory_bandwidth(threads, mib=64 if quick else 512),
            "matmul_flops_per_s": max(rates.values()), "matmul_flops_per_s_by_library": rates}


__all__ = ["measure", "memory_bandwidth", "matmul_rate"]
