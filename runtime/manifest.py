"""``manifest.json``: the contract between build and run, as the runtime reads it.

The build (``export/``) writes it; everything here only reads and checks. It records the schema
and tool versions, the model variant, library versions, the checkpoint fingerprint and, per stage,
the graph key, file SHA-256s, precision, dimension ranges, the cache key and the parity results.
A directory from a newer schema is refused rather than misread; an older one must be rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"


class ManifestError(RuntimeError):
    """An engines directory's manifest is missing, unreadable or from another schema."""


def load_manifest(engine_dir: str | Path) -> dict:
    path = Path(engine_dir) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST} in {engine_dir}: build it with `tts-export build --out {engine_dir}`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); remove the directory and rebuild") from None
    return check_manifest(data, path)


def check_manifest(data, path: str | Path) -> dict:
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(data).__name__}; rebuild the directory")
    v = data.get("schema_version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ManifestError(f"{path}: schema_version must be an integer, got {v!r}; rebuild the directory")
    if v > SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema version {v}, newer than this tool's {SCHEMA_VERSION}: "
                            f"upgrade indextts-trt or rebuild into an empty directory")
    if v < SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema version {v}, older than this tool's {SCHEMA_VERSION}: rebuild it")
    for key, kind in (("variant", str), ("stages", dict)):
        if not isinstance(data.get(key), kind):
            raise ManifestError(f"{path}: '{key}' is missing or not a {kind.__name__}; rebuild the directory")
    return data


__all__ = ["SCHEMA_VERSION", "MANIFEST", "ManifestError", "load_manifest", "check_manifest"]
