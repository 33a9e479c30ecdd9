"""Writing ``manifest.json``, the contract between build and run (``runtime/manifest.py`` reads it).

A new manifest records the schema, the tool, the model variant and library versions; the build
adds the checkpoint fingerprint and one entry per stage. Cache keys are digests of exactly what
shapes an artifact (see ``build.py``). Written atomically.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from indextts_trt.runtime.files import write_text_atomic
from indextts_trt.runtime.manifest import MANIFEST, SCHEMA_VERSION, ManifestError, check_manifest


def library_versions() -> dict[str, str | None]:
    import importlib

    out: dict[str, str | None] = {"python": platform.python_version()}
    for mod in ("torch", "onnx", "onnxscript", "onnxruntime", "tensorrt"):
        try:
            out[mod] = str(importlib.import_module(mod).__version__)
        except Exception:  # not installed, or a binding without its libraries
            out[mod] = None
    return out


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags, from the first processor in ``/proc/cpuinfo``
    (elsewhere the platform's processor name and no flags): benchmark reports and int8 timing
    keys name the machine with them."""
    model, flags, named = platform.processor() or platform.machine(), set(), False
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not named:
            model, named = value.strip(), True
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def tool_version() -> str:
    from indextts_trt.runtime import __version__

    return __version__


def new_manifest(variant: str) -> dict:
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "indextts-trt", "version": tool_version()},
            "variant": variant, "versions": library_versions(), "checkpoints": {}, "stages": {}}


def open_manifest(out_dir: str | Path, variant: str) -> dict:
    """The manifest of ``out_dir`` to update, or a new one. A directory built for another model
    variant is refused: its graphs would be mixed with this build's."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return new_manifest(variant)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); remove it or build into an empty directory") from None
    data = check_manifest(data, path)
    if data["variant"] != variant:
        raise ManifestError(f"{out_dir} holds a {data['variant']} build; build {variant} into another directory")
    return data


def save_manifest(out_dir: str | Path, data: dict) -> None:
    data = dict(data, versions=library_versions(), tool={"name": "indextts-trt", "version": tool_version()})
    write_text_atomic(Path(out_dir) / MANIFEST, json.dumps(data, indent=2, sort_keys=False))


def files_fingerprint(files) -> str:
    """Digest of source files' names and contents (code that shapes an artifact)."""
    h = hashlib.sha256()
    for f in sorted(Path(p) for p in files):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


__all__ = ["library_versions", "tool_version", "new_manifest", "open_manifest", "save_manifest", "files_fingerprint",
           "cache_key", "MANIFEST", "SCHEMA_VERSION", "ManifestError"]
