"""Atomic file writes and file hashes.

A write goes to a temporary file in the target's folder, then a rename, so a crash or a full disk
never leaves a half-written file under the final name. Every module that writes a result file
uses :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(tmp_path)`` fills a temporary file that then replaces ``path``. The file gets the
    mode ``open()`` would give it (0666 less the umask), not mkstemp's private 0600: WAVs, engines
    and voices are meant to be read by other users and services."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; rename it into place only on success.

    A failure (or Ctrl-C) leaves nothing at ``final`` and removes the temporary directory. The
    directory gets the mode ``mkdir`` would give it, not mkdtemp's private 0700.
    """
    final = Path(final)
    occupied = any(final.iterdir()) if final.is_dir() else final.exists()
    if occupied and not overwrite:
        raise FileExistsError(f"{final} exists and is not empty (pass overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


PICKLE_SUFFIXES = (".pth", ".pt", ".bin")  # the released checkpoints' torch pickles


def safetensors_twin(path: str | Path) -> Path:
    """The safetensors copy ``tts-export convert`` writes beside a released pickle (gpt.pth ->
    gpt.safetensors); loaders prefer it when present."""
    return Path(path).with_suffix(".safetensors")


def checkpoint_source(path: str | Path) -> Path:
    """The file a loader actually reads for ``path``: its safetensors twin when one exists."""
    path = Path(path)
    twin = safetensors_twin(path)
    return twin if path.suffix in PICKLE_SUFFIXES and twin.is_file() else path


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


__all__ = ["atomic_write", "atomic_dir", "write_bytes_atomic", "write_text_atomic", "sha256_file", "PICKLE_SUFFIXES",
           "safetensors_twin", "checkpoint_source"]
