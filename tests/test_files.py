"""Atomic writes: nothing half-written on failure, and the file modes open()/mkdir would give."""

from __future__ import annotations

import os
import stat

import pytest

from indextts_trt.runtime.files import atomic_dir, atomic_write, write_bytes_atomic


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    dst = tmp_path / "x.bin"

    def half(tmp):
        open(tmp, "wb").write(b"partial")
        raise ValueError("disk full")

    with pytest.raises(ValueError):
        atomic_write(dst, half)
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(dst, b"ok")
    assert dst.read_bytes() == b"ok"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_modes_follow_the_umask_as_open_would(tmp_path, umask):
    old = os.umask(umask)
    try:
        f = write_bytes_atomic(tmp_path / f"a{umask}.wav", b"x")
        with atomic_dir(tmp_path / f"d{umask}") as tmp:
            (tmp / "f").write_text("1")
        with open(tmp_path / f"ref{umask}", "wb"):
            pass
        os.mkdir(tmp_path / f"refd{umask}")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(f) == mode(tmp_path / f"ref{umask}") == 0o666 & ~umask
    assert mode(tmp_path / f"d{umask}") == mode(tmp_path / f"refd{umask}") == 0o777 & ~umask


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.pth").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_dir(out):
            pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"] and len(list(tmp_path.iterdir())) == 1
