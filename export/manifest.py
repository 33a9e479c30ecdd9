"""``engines/manifest.json``: the contract between build and run.

Schema and tool versions, library versions, the checkpoint fingerprint and, per stage, the spec
hash, file SHA-256s, precision, dimension ranges, the cache key and the parity results. Written
atomically; a directory from a newer schema is refused rather than misread.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class ManifestError(RuntimeError):
    pass


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str | None]:
    import importlib

    out: dict[str, str | None] = {"python": platform.python_version()}
    for mod in ("torch", "onnx", "onnxruntime", "polygraphy", "tensorrt"):
        try:
            out[mod] = str(importlib.import_module(mod).__version__)
        except Exception:  # not installed, or a binding without its libraries
            out[mod] = None
    return out


def tool_version() -> str:
    from indextts_trt.runtime import __version__

    return __version__


def new_manifest() -> dict:
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "indextts-trt", "version": tool_version()},
            "versions": library_versions(), "checkpoints": {}, "stages": {}}


def load_manifest(out_dir: str | Path, *, create: bool = False) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        if create:
            return new_manifest()
        raise ManifestError(f"no {MANIFEST} in {out_dir}: build it with `tts-export build --out {out_dir}`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); remove the directory and rebuild") from None
    v = data.get("schema_version")
    if not isinstance(v, int) or v > SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema version {v}, newer than this tool's {SCHEMA_VERSION}: "
                            f"upgrade indextts-trt or rebuild into an empty directory")
    if v < SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema version {v}, older than {SCHEMA_VERSION}: rebuild it")
    return data


def save_manifest(out_dir: str | Path, data: dict) -> None:
    out_dir = Path(out_dir)
    data = dict(data, versions=library_versions(), tool={"name": "indextts-trt", "version": tool_version()})
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
        os.replace(tmp, out_dir / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def code_fingerprint() -> str:
    """Hash of the source that shapes a graph: the reference models, the adapters, the exporter.
    A code change invalidates cached stages even when the checkpoints did not change."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    # only what shapes a graph or its parity check: the reference models, the adapters, samplers,
    # exporter and gate, the config and stage specs. The CLIs, the TensorRT plan and the runtime's
    # sequencing do not, and editing them must not invalidate an 8-minute full-size build.
    export = [root / f for f in ("adapters.py", "build.py", "onnx_export.py", "parity.py", "patches.py", "sources.py")]
    runtime = [root.parent / "runtime" / f for f in ("config.py", "spec.py", "stages.py")]
    for f in export + sorted((root.parent / "reference").glob("*.py")) + runtime:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
