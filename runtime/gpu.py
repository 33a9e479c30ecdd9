"""The one GPU probe: which NVIDIA GPU (if any) this process can use, and its compute capability.

The builder, ``tts-export env``, the benchmark report and the TensorRT backend all ask here, so
they cannot disagree (they used to ask nvidia-smi, torch and cuda-python separately). Torch-free.

- With cuda-python installed (the ``trt`` extra), its CUDA runtime answers: that is the library
  the TensorRT backend allocates and launches with, so a GPU it cannot use (no driver, a driver
  too old for its CUDA) is reported as unusable even where nvidia-smi would list it.
- Without cuda-python, ``nvidia-smi`` answers (what a machine with only the ONNX Runtime CUDA
  provider has).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


class NoGpu(RuntimeError):
    """No usable NVIDIA GPU; the message says what the probe saw."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "major.minor", e.g. "9.0"
    memory_bytes: int
    source: str  # "cuda-python" or "nvidia-smi"


def cuda_runtime():
    """cuda-python's runtime module, or None when it is not installed."""
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415 - cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # noqa: PLC0415 - older cuda-python 12.x
        except ImportError:
            return None
    return cudart


def _err_name(err) -> str:
    return getattr(err, "name", None) or str(err)


def _probe_cudart(cudart, index: int) -> GpuInfo:
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        # e.g. cudaErrorInsufficientDriver with no driver at all: returned, not raised
        raise NoGpu(f"no usable NVIDIA GPU (cuda-python: cudaGetDeviceCount returned {_err_name(err)})")
    if count <= index:
        raise NoGpu(f"no NVIDIA GPU {index} (cuda-python sees {count})")
    err, prop = cudart.cudaGetDeviceProperties(index)
    if err != cudart.cudaError_t.cudaSuccess:
        raise NoGpu(f"cuda-python: cudaGetDeviceProperties({index}) returned {_err_name(err)}")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(str(name).strip(), f"{prop.major}.{prop.minor}", int(prop.totalGlobalMem), "cuda-python")


def _probe_smi(index: int) -> GpuInfo:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise NoGpu("no NVIDIA GPU visible (cuda-python is not installed and nvidia-smi is not on PATH)")
    try:
        r = subprocess.run([exe, "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits",
                            "-i", str(index)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NoGpu(f"no NVIDIA GPU visible (nvidia-smi: {e})") from None
    fields = [s.strip() for s in r.stdout.strip().splitlines()[0].split(",")] if r.stdout.strip() else []
    if r.returncode != 0 or len(fields) != 3:
        raise NoGpu(f"no NVIDIA GPU visible (nvidia-smi: {(r.stderr or r.stdout).strip()[:200]})")
    name, cc, mib = fields
    try:
        mem = int(float(mib) * 2**20)
    except ValueError:
        mem = 0  # "[N/A]" on some virtual GPUs
    return GpuInfo(name, cc, mem, "nvidia-smi")


def probe(index: int = 0) -> GpuInfo:
    """GPU ``index`` as this process can use it, or NoGpu saying why not."""
    cudart = cuda_runtime()
    if cudart is not None:
        return _probe_cudart(cudart, index)
    return _probe_smi(index)


def describe() -> str:
    """One line for reports: 'NVIDIA H100 (sm_90, 80 GiB, via cuda-python)' or why there is none."""
    try:
        g = probe()
    except NoGpu as e:
        return f"none ({e})"
    major, _, minor = g.compute_capability.partition(".")
    return f"{g.name} (sm_{major}{minor}, {g.memory_bytes / 2**30:.0f} GiB, via {g.source})"




# ------------------------------------------------------------------ TensorRT


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or a GPU for it) cannot be used here; the message says why."""


def import_tensorrt():
    """The tensorrt module, or TensorRTUnavailable saying why (the registry's wheels ship only the
    bindings; a missing libnvinfer surfaces on first use, not on import)."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - lazy on purpose

        trt.Logger  # the bindings import even when libnvinfer is missing; touching them loads it
        return trt
    except Exception as e:  # noqa: BLE001 - ImportError, OSError from a missing libnvinfer, ...
        raise TensorRTUnavailable(f"{type(e).__name__}: {e}") from None


def gpu_info() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0, or TensorRTUnavailable."""
    try:
        g = probe(0)
    except NoGpu as e:
        raise TensorRTUnavailable(str(e)) from None
    return g.name, g.compute_capability


def gpu_summary() -> str | None:
    """'NAME (compute capability X.Y)' for reports, or None without a usable NVIDIA GPU."""
    try:
        name, cc = gpu_info()
    except TensorRTUnavailable:
        return None
    return f"{name} (compute capability {cc})"


__all__ = ["GpuInfo", "NoGpu", "probe", "describe", "cuda_runtime", "TensorRTUnavailable", "import_tensorrt", "gpu_info",
           "gpu_summary"]
