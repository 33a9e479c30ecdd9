"""Saved voices: a prompt's conditioning (normalized w2v features, prompt condition, reference mel,
style), computed once and reused across calls and processes.

Stored as ``NAME.safetensors`` (tensors; no pickle) + ``NAME.json`` (format version, the engines
fingerprint, the source prompt, shapes). A voice made with other engines (a different cache key of
any stage that computed it) is refused with a message that says how to re-create it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from .files import atomic_write

FORMAT = 1
CONDITIONING_STAGES = ("semantic_encoder", "semantic_codec", "campplus", "length_regulator")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VoiceError(ValueError):
    pass


def engines_fingerprint(manifest: dict) -> str:
    keys = {s: manifest["stages"][s]["cache_key"] for s in CONDITIONING_STAGES}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _paths(voices_dir: Path, name: str) -> tuple[Path, Path]:
    if not _NAME.match(name):
        raise VoiceError(f"voice name {name!r}: use letters, digits, '_', '-', '.' (at most 64)")
    return voices_dir / f"{name}.safetensors", voices_dir / f"{name}.json"


def save_voice(voices_dir: str | Path, name: str, tensors: dict[str, np.ndarray], fingerprint: str,
               source: str) -> Path:
    from safetensors.numpy import save_file

    voices_dir = Path(voices_dir)
    voices_dir.mkdir(parents=True, exist_ok=True)
    st, meta = _paths(voices_dir, name)
    atomic_write(st, lambda p: save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, p))
    info = {"format": FORMAT, "engines": fingerprint, "source": source, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "shapes": {k: list(v.shape) for k, v in tensors.items()}}
    atomic_write(meta, lambda p: Path(p).write_text(json.dumps(info, indent=2)))
    return st


def load_voice(voices_dir: str | Path, name: str, fingerprint: str) -> dict[str, np.ndarray]:
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
    if info.get("engines") != fingerprint:
        raise VoiceError(f"voice {name!r} was made with other engines (fingerprint {info.get('engines')} vs "
                         f"{fingerprint}): re-create it with --speaker {info.get('source', 'WAV')} --save-voice {name}")
    try:
        tensors = load_file(str(st))
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise VoiceError(f"{st} is truncated or corrupt: {e}") from None
    return tensors
