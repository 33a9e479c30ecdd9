"""Atomic file writes and file hashes.

A write goes to a temporary file in the target's folder, then a rename, so a crash or a full disk
never leaves a half-written file under the final name. Every module that writes a result file
uses :func:`atomic_write`.

Write targets are regular files or new paths only (:func:`check_write_target`): a rename onto a
character device, a FIFO, a socket or a symbolic link would replace it (as root, ``--out
/dev/full`` would replace ``/dev/full``), so those are refused before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import WriteError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def check_write_target(path: str | Path) -> Path:
    """Raise :class:`WriteError` unless ``path`` is a regular file or a new path whose nearest
    existing parent is a directory. A symbolic link is refused too (the rename would replace the
    link, and writing through it would write somewhere the user did not name)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a new path (its parents are checked below)
        st = None
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
        raise WriteError(f"cannot write {path}: it is {kind}; outputs go only to regular files or new paths")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise WriteError(f"cannot write {path}: {parent} is not a directory")
    return path


def _write_error(path: Path, e: OSError) -> WriteError:
    why = "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
    return WriteError(f"cannot write {path}: {why} (nothing was written)")


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(tmp_path)`` fills a temporary file that then replaces ``path``. The file gets the
    mode ``open()`` would give it (0666 less the umask), not mkstemp's private 0600: WAVs, engines
    and voices are meant to be read by other users and services. An OS error (no space, no
    permission, a target that is not a regular file) is a :class:`WriteError` naming ``path``,
    with nothing left behind."""
    path = Path(path)
    check_write_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        write(tmp)
        check_write_target(path)  # again: the path may have changed while the file was written
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, WriteError):
            raise
        raise _write_error(path, e) from None
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
    if final.is_symlink() or (final.exists() and not final.is_dir()):  # never rename a device or a link away
        kind = "a symbolic link" if final.is_symlink() else "not a directory"
        raise WriteError(f"cannot write the directory {final}: it is {kind}")
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


__all__ = ["atomic_write", "atomic_dir", "check_write_target", "write_bytes_atomic", "write_text_atomic", "sha256_file",
           "WriteError", "PICKLE_SUFFIXES", "safetensors_twin", "checkpoint_source"]
