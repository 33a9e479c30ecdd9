"""Saved voices: a prompt's conditioning (normalized w2v features, prompt condition, reference mel,
style), computed once and reused across calls and processes.

Stored as ``NAME.safetensors`` (tensors; no pickle) + ``NAME.json`` (format version, its origin,
the source prompt, shapes). The origin is what the tensors depend on: the cache key of every stage
that computed them, the backend and the precision that ran those stages. A voice whose origin
differs from the pipeline's (other engines, ONNX Runtime vs TensorRT, fp32 vs fp16) is refused with
a message that says what differs and how to re-create it; so is a tensors file whose size or SHA-256
differs from the JSON's, and a tensor of the wrong shape (checked by the variant's pipeline).
A name is a plain file name (:func:`check_voice_name`), so no name reaches outside the directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from .errors import OptionError, UserError
from .files import write_bytes_atomic, write_text_atomic
from .spec import Dim

FORMAT = 3  # 3: the JSON records the tensors file's size and SHA-256
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "a voice name is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"


class VoiceError(UserError, ValueError):
    """A saved voice is missing, damaged, or was made by other engines, backend or precision."""


def check_voice_name(name, field: str = "voice") -> str:
    """The one rule for voice names: a plain file name inside the voices directory, never a path
    (no '/', no '..', no leading dot), so a name cannot reach outside it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise OptionError(field, name, NAME_RULE)
    return name


def voice_origin(manifest: dict, stages, backend: str, precision: dict[str, str]) -> dict:
    keys = {s: manifest["stages"][s].get("cache_key") for s in stages}
    return {"engines": hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16],
            "backend": backend, "precision": dict(precision)}


def _origin_difference(saved: dict, now: dict) -> str | None:
    if saved.get("engines") != now["engines"]:
        return f"other engines (fingerprint {saved.get('engines')} vs {now['engines']})"
    if saved.get("backend") != now["backend"]:
        return f"backend {saved.get('backend')} (this pipeline runs {now['backend']})"
    if saved.get("precision") != now["precision"]:
        saved_p = saved.get("precision") if isinstance(saved.get("precision"), dict) else {}
        diff = sorted(k for k in now["precision"] if saved_p.get(k) != now["precision"][k])
        return (f"another precision of {', '.join(diff)} "
                f"({', '.join(str(saved_p.get(k)) for k in diff)} vs {', '.join(now['precision'][k] for k in diff)})")
    return None


def _paths(voices_dir: Path, name: str) -> tuple[Path, Path]:
    check_voice_name(name, "name")
    return voices_dir / f"{name}.safetensors", voices_dir / f"{name}.json"


def save_voice(voices_dir: str | Path, name: str, tensors: dict[str, np.ndarray], origin: dict,
               source: str) -> Path:
    from safetensors.numpy import save

    st, meta = _paths(Path(voices_dir), name)
    # serialized in memory, then written atomically: a full disk is a WriteError naming the file
    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    write_bytes_atomic(st, blob)
    info = {"format": FORMAT, "origin": origin, "source": source, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "shapes": {k: list(v.shape) for k, v in tensors.items()}, "bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest()}
    write_text_atomic(meta, json.dumps(info, indent=2))
    return st


def load_voice(voices_dir: str | Path, name: str, origin: dict) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    st, meta = _paths(Path(voices_dir), name)
    if not st.is_file() or not meta.is_file():
        raise VoiceError(f"voice {name!r} not found in {voices_dir} (save one with --speaker WAV --save-voice {name})")
    try:
        info = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VoiceError(f"{meta} is not valid JSON: {e}") from None
    if not isinstance(info, dict):
        raise VoiceError(f"{meta}: expected a JSON object, got {type(info).__name__}: re-create the voice")
    if info.get("format") != FORMAT:
        raise VoiceError(f"voice {name!r} has format {info.get('format')!r}, this tool reads {FORMAT}: re-create it "
                         f"with --speaker WAV --save-voice {name}")
    why = _origin_difference(info.get("origin") if isinstance(info.get("origin"), dict) else {}, origin)
    if why:
        raise VoiceError(f"voice {name!r} was made with {why}: re-create it with --speaker "
                         f"{info.get('source', 'WAV')} --save-voice {name}")
    blob = st.read_bytes()
    if len(blob) != info.get("bytes") or hashlib.sha256(blob).hexdigest() != info.get("sha256"):
        raise VoiceError(f"{st} does not match {meta.name} ({len(blob)} bytes; recorded {info.get('bytes')}, "
                         f"or another SHA-256): it was modified or truncated; re-create it with --save-voice {name}")
    try:
        return load(blob)
    except Exception as e:  # safetensors raises its own error types for a corrupt file
        raise VoiceError(f"{st} is truncated or corrupt: {e}") from None


def check_voice_tensors(tensors: dict, want: dict[str, tuple[int | Dim, ...]]) -> None:
    """Every tensor a variant's voice needs: float32, finite, of the given shape; a :class:`Dim`
    in a shape is a range the size must be in, the same size in every tensor that names it."""
    sizes: dict[str, int] = {}
    for name, shape in want.items():
        a = tensors.get(name)
        ok = isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == len(shape)
        for d, n in zip(shape, a.shape if ok else ()):
            if isinstance(d, Dim):
                ok = ok and d.min <= n <= d.max and sizes.setdefault(d.name, n) == n
            else:
                ok = ok and d == n
        if not ok or not np.isfinite(a).all():
            got = "missing" if a is None else f"{getattr(a, 'dtype', type(a).__name__)} {tuple(getattr(a, 'shape', ()))}"
            expect = ", ".join(f"{d.name} in [{d.min}, {d.max}]" if isinstance(d, Dim) else str(d) for d in shape)
            raise VoiceError(f"saved voice tensor {name!r} is {got}; expected finite float32 ({expect}): "
                             f"re-create the voice")


__all__ = ["FORMAT", "NAME_RULE", "VoiceError", "check_voice_name", "voice_origin", "save_voice", "load_voice",
           "check_voice_tensors"]
