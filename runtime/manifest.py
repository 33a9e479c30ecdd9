"""``manifest.json``: the contract between build and run, as the runtime reads it.

The build (``export/``) writes it; everything here only reads and checks. It records the schema
and tool versions, the model variant, library versions, the checkpoint fingerprint and, per stage,
the graph key, file SHA-256s (and sizes), precision, dimension ranges, the cache key and the parity
results. A directory from a newer schema is refused rather than misread; an older one must be
rebuilt. Every field the runtime reads is checked here, so a damaged manifest is one
:class:`ManifestError` naming the field, never a ``KeyError`` later.

Integrity: what the runtime loads is checked against the recorded hashes (:func:`verify_files`).
The size is compared at every load; the SHA-256 is computed once per file per process, and again
only when the file's size, mtime or inode changed (a small cache), so a flipped byte, a graph from
another build or a truncated file is refused with the file's name before it is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .errors import UserError

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"


class ManifestError(UserError, RuntimeError):
    """An engines directory's manifest is missing, unreadable or from another schema."""


class IntegrityError(ManifestError):
    """A file of an engines directory is missing or differs from what its manifest records."""


def load_manifest(engine_dir: str | Path) -> dict:
    path = Path(engine_dir) / MANIFEST
    if not path.is_file():
        from .workdirs import no_build_message

        raise ManifestError(no_build_message(engine_dir))
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        from .workdirs import fresh_build_hint

        raise ManifestError(f"{path} is not valid JSON ({e}); {fresh_build_hint(engine_dir)}") from None
    except OSError as e:
        raise ManifestError(f"cannot read {path}: {e.strerror}") from None
    return check_manifest(data, path)


def _fresh(path, data: dict | None = None) -> str:
    """The hint for a manifest the build cannot update: remove the directory, build it again."""
    from .workdirs import fresh_build_hint

    return fresh_build_hint(Path(path).parent, data if isinstance(data, dict) else {})


def _plain_name(name) -> bool:
    """A file name inside the engines directory: one path component, so a manifest can never point
    the runtime at a file elsewhere."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and "\0" not in name


def _hashes(value, where: str, path) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(_plain_name(k) and isinstance(v, str) for k, v in value.items()):
        raise ManifestError(f"{path}: '{where}' must map plain file names to SHA-256 strings; {_fresh(path)}")
    return dict(value)


def check_manifest(data, path: str | Path) -> dict:
    def bad(what: str) -> ManifestError:
        return ManifestError(f"{path}: {what}; {_fresh(path)}")

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    v = data.get("schema_version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise bad(f"schema_version must be an integer, got {v!r}")
    if v > SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema version {v}, newer than this tool's {SCHEMA_VERSION}: "
                            f"upgrade indextts-trt or rebuild into an empty directory")
    if v < SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema version {v}, older than this tool's {SCHEMA_VERSION}: "
                            f"{_fresh(path, data)}")
    for key, kind in (("variant", str), ("stages", dict)):
        if not isinstance(data.get(key), kind):
            raise bad(f"'{key}' is missing or not a {'string' if kind is str else 'mapping'}")
    for key in ("tool", "versions", "checkpoints"):
        if not isinstance(data.get(key, {}), dict):
            raise bad(f"'{key}' is not a mapping")
    if "host_files" in data:
        _hashes(data["host_files"], "host_files", path)
        _sizes(data, "host_sizes", path)
    for name, st in data["stages"].items():
        if not isinstance(st, dict):
            raise bad(f"stage {name!r} is a {type(st).__name__}, not a mapping")
        files = _hashes(st.get("files"), f"stages.{name}.files", path)
        if not _plain_name(st.get("onnx")) or st["onnx"] not in files:
            raise bad(f"stages.{name}.onnx must name a file listed in stages.{name}.files")
        _sizes(st, "sizes", path, f"stages.{name}.")
        if not isinstance(st.get("graph_key"), str) or not isinstance(st.get("parity"), dict):
            raise bad(f"stages.{name} lacks its graph_key or parity")
        if not isinstance(st.get("dims", {}), dict):
            raise bad(f"stages.{name}.dims is not a mapping")
        if not isinstance(st.get("checkpoint_files", {}), Mapping) or not all(
                isinstance(v, str) for v in st.get("checkpoint_files", {}).values()):
            raise bad(f"stages.{name}.checkpoint_files must map checkpoint files to SHA-256 strings")
        trt = st.get("trt")
        if trt is not None and not (isinstance(trt, dict) and _plain_name(trt.get("engine"))
                                    and isinstance(trt.get("sha256"), str)):
            raise bad(f"stages.{name}.trt must name its engine file and its sha256")
    return data


def _sizes(obj: dict, key: str, path, prefix: str = "") -> None:
    sizes = obj.get(key, {})
    if not isinstance(sizes, Mapping) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                 for n in sizes.values()):
        raise ManifestError(f"{path}: '{prefix}{key}' must map file names to byte counts; {_fresh(path)}")


# ------------------------------------------------------------------------------------- integrity

_VERIFIED: dict[tuple[str, int, int, int, int], str] = {}  # (path, dev, inode, size, mtime_ns) -> sha256


def file_digest(path: Path, st: os.stat_result | None = None) -> str:
    """SHA-256 of ``path``, computed once per process while its size, mtime and inode stay."""
    from .files import sha256_file

    st = st or path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        if len(_VERIFIED) > 4096:  # a long-lived server reloading many directories: stay small
            _VERIFIED.clear()
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


def verify_files(engine_dir: str | Path, hashes: Mapping[str, str], sizes: Mapping[str, int] | None = None) -> None:
    """Raise :class:`IntegrityError` naming the first file that is missing, not a regular file,
    of another size than recorded, or whose SHA-256 differs from the manifest's."""
    from .workdirs import rebuild_hint

    engine_dir = Path(engine_dir)
    rebuild = rebuild_hint(engine_dir)
    for name, want in hashes.items():
        p = engine_dir / name
        try:
            st = p.stat()
        except FileNotFoundError:
            raise IntegrityError(f"{p} is missing (the manifest records it): {rebuild}") from None
        except OSError as e:
            raise IntegrityError(f"cannot read {p}: {e.strerror}") from None
        if not p.is_file():
            raise IntegrityError(f"{p} is not a regular file: {rebuild}")
        size = (sizes or {}).get(name)
        if size is not None and st.st_size != size:
            raise IntegrityError(f"{p} is {st.st_size} bytes, the manifest records {size} (truncated or replaced): "
                                 f"{rebuild}")
        try:
            got = file_digest(p, st)
        except OSError as e:
            raise IntegrityError(f"cannot read {p}: {e.strerror}") from None
        if got != want:
            raise IntegrityError(f"{p} does not match the manifest (sha256 {got[:12]}…, recorded {want[:12]}…): "
                                 f"it was modified or comes from another build; {rebuild}")


def mixed_checkpoints(manifest: dict) -> str | None:
    """Why the directory mixes builds from different checkpoints, or None. Every stage records the
    SHA-256 of the checkpoint files it was traced from, and ``checkpoints.files`` those of the last
    build (which wrote the host files); one checkpoint file with two hashes means two builds'
    graphs (or host tensors) in one directory, each intact on its own."""
    seen: dict[str, tuple[str, str]] = {}  # checkpoint file -> (sha256, who recorded it first)
    sources = [("the last build (host files)", (manifest.get("checkpoints") or {}).get("files") or {})]
    sources += [(f"stage {n}", st.get("checkpoint_files") or {}) for n, st in manifest["stages"].items()]
    for who, files in sources:
        for key, sha in files.items():
            first = seen.setdefault(key, (sha, who))
            if first[0] != sha:
                return (f"{who} and {first[1]} were built from different '{key}' checkpoint files (sha256 "
                        f"{sha[:12]}… vs {first[0][:12]}…)")
    return None


def stage_graph(entry: dict, precision: str) -> dict:
    """The graph ONNX Runtime loads for a stage at ``precision``: the fp32 export, or the mixed-
    precision graph the build made from it (``entry["graphs"][precision]``: ``onnx``, ``files``,
    ``sizes``, ``precision`` — fp32 where the stage had to stay fp32, with the ``note`` why)."""
    if precision == "fp32":
        return {"onnx": entry["onnx"], "files": entry["files"], "sizes": entry.get("sizes") or {}, "precision": "fp32"}
    return entry["graphs"][precision]


def stage_files(entry: dict, backend: str, precision: str = "fp32") -> tuple[dict[str, str], dict[str, int]]:
    """The files a backend loads for one stage, with their recorded hashes and sizes."""
    if backend == "trt":
        return {entry["trt"]["engine"]: entry["trt"]["sha256"]}, {}
    g = stage_graph(entry, precision)
    return dict(g["files"]), dict(g.get("sizes") or {})


__all__ = ["SCHEMA_VERSION", "MANIFEST", "ManifestError", "IntegrityError", "load_manifest", "check_manifest",
           "verify_files", "stage_files", "stage_graph", "file_digest", "mixed_checkpoints"]
