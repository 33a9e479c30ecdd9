"""Saved voices: a prompt's conditioning (normalized w2v features, prompt condition, reference mel,
style), computed once and reused across calls and processes.

Stored as ``NAME.safetensors`` (tensors; no pickle) + ``NAME.json`` (format version, its origin,
the source prompt, shapes). The origin is what the tensors depend on: the cache key of every stage
that computed them, the backend and the precision that ran those stages. A voice whose origin
differs from the pipeline's (other engines, ONNX Runtime vs TensorRT, fp32 vs fp16) is refused with
a message that says what differs and how to re-create it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from .files import atomic_write

FORMAT = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VoiceError(ValueError):
    pass


def voice_origin(manifest: dict, stages, backend: str, precision: dict[str, str]) -> dict:
    keys = {s: manifest["stages"][s]["cache_key"] for s in stages}
    return {"engines": hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16],
            "backend": backend, "precision": dict(precision)}


def _origin_difference(saved: dict, now: dict) -> str | None:
    if saved.get("engines") != now["engines"]:
        return f"other engines (fingerprint {saved.get('engines')} vs {now['engines']})"
    if saved.get("backend") != now["backend"]:
        return f"backend {saved.get('backend')} (this pipeline runs {now['backend']})"
    if saved.get("precision") != now["precision"]:
        diff = sorted(k for k in now["precision"] if (saved.get("precision") or {}).get(k) != now["precision"][k])
        return (f"another precision of {', '.join(diff)} "
                f"({', '.join(str((saved.get('precision') or {}).get(k)) for k in diff)} vs "
                f"{', '.join(now['precision'][k] for k in diff)})")
    return None


def _paths(voices_dir: Path, name: str) -> tuple[Path, Path]:
    if not _NAME.match(name):
        raise VoiceError(f"voice name {name!r}: use letters, digits, '_', '-', '.' (at most 64)")
    return voices_dir / f"{name}.safetensors", voices_dir / f"{name}.json"


def save_voice(voices_dir: str | Path, name: str, tensors: dict[str, np.ndarray], origin: dict,
               source: str) -> Path:
    from safetensors.numpy import save_file

    voices_dir = Path(voices_dir)
    voices_dir.mkdir(parents=True, exist_ok=True)
    st, meta = _paths(voices_dir, name)
    atomic_write(st, lambda p: save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, p))
    info = {"format": FORMAT, "origin": origin, "source": source, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "shapes": {k: list(v.shape) for k, v in tensors.items()}}
    atomic_write(meta, lambda p: Path(p).write_text(json.dumps(info, indent=2)))
    return st


def load_voice(voices_dir: str | Path, name: str, origin: dict) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    st, meta = _paths(Path(voices_dir), name)
    if not st.is_file() or not meta.is_file():
        raise VoiceError(f"voice {name!r} not found in {voices_dir} (save one with --speaker WAV --save-voice {name})")
    try:
        info = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise VoiceError(f"{meta} is not valid JSON: {e}") from None
    if info.get("format") != FORMAT:
        raise VoiceError(f"voice {name!r} has format {info.get('format')}, this tool reads {FORMAT}: re-create it")
    why = _origin_difference(info.get("origin") or {}, origin)
    if why:
        raise VoiceError(f"voice {name!r} was made with {why}: re-create it with --speaker "
                         f"{info.get('source', 'WAV')} --save-voice {name}")
    try:
        tensors = load_file(str(st))
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise VoiceError(f"{st} is truncated or corrupt: {e}") from None
    return tensors
