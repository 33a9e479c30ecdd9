"""What is installed and usable: library versions, ONNX Runtime providers, TensorRT, GPU (runtime/gpu.py)."""

from __future__ import annotations

import importlib
import platform


def _version(mod: str) -> str:
    try:
        m = importlib.import_module(mod)
    except Exception as e:  # ImportError, or a broken binary wheel (e.g. tensorrt without libs)
        return f"not usable ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"
    return str(getattr(m, "__version__", "unknown"))


def collect_env() -> dict[str, str]:
    from indextts_trt.runtime import __version__

    out: dict[str, str] = {"indextts-trt": __version__, "python": platform.python_version(),
                           "platform": platform.platform()}
    for mod in ("numpy", "torch", "onnx", "onnxruntime", "modelopt", "tensorrt", "cuda.bindings",
                "safetensors", "sentencepiece", "soundfile", "soxr", "tn", "tiktoken"):
        out[mod] = _version(mod)
    try:
        import onnxruntime as ort

        out["onnxruntime providers"] = ", ".join(ort.get_available_providers())
    except Exception:
        pass
    from indextts_trt.runtime.gpu import TensorRTUnavailable, describe, import_tensorrt

    out["gpu"] = describe()  # the same probe the builder and the TensorRT backend use
    try:
        out["tensorrt usable"] = f"yes ({import_tensorrt().__version__})"
    except TensorRTUnavailable as e:
        out["tensorrt usable"] = f"no ({e})"
    return out
