"""TensorRT and GPU availability: the one probe every part of the project asks.

``import_tensorrt`` returns the module or raises :class:`TensorRTUnavailable` saying why (the
registry's wheels ship only bindings; a missing libnvinfer surfaces on first use, not on import).
``gpu_info`` names device 0 and its compute capability. Torch-free.
"""

from __future__ import annotations

import functools
import subprocess


class TensorRTUnavailable(RuntimeError):
    pass


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: PLC0415 - lazy on purpose

        trt.Logger  # the bindings import even when libnvinfer is missing; touching them loads it
        return trt
    except Exception as e:  # noqa: BLE001 - ImportError, OSError from a missing libnvinfer, ...
        raise TensorRTUnavailable(f"{type(e).__name__}: {e}") from None


@functools.lru_cache(maxsize=1)
def gpu_info() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0, via nvidia-smi."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i", "0"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TensorRTUnavailable(f"no NVIDIA GPU visible (nvidia-smi: {e})") from None
    if r.returncode != 0 or "," not in r.stdout:
        raise TensorRTUnavailable(f"no NVIDIA GPU visible (nvidia-smi: {r.stderr.strip() or r.stdout.strip()})")
    name, cc = (s.strip() for s in r.stdout.strip().splitlines()[0].split(",", 1))
    return name, cc


def gpu_summary() -> str | None:
    """'NAME (compute capability X.Y)', or None without a visible NVIDIA GPU."""
    try:
        name, cc = gpu_info()
    except TensorRTUnavailable:
        return None
    return f"{name} (compute capability {cc})"


__all__ = ["TensorRTUnavailable", "import_tensorrt", "gpu_info", "gpu_summary"]
