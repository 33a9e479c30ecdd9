"""``tts-export convert DIR --to safetensors``: a safetensors twin beside every released pickle.

gpt.pth, s2mel.pth, feat1.pt, feat2.pt, wav2vec2bert_stats.pt, hf_cache/campplus_cn_common.bin and
hf_cache/bigvgan/bigvgan_generator.pt each get ``<stem>.safetensors`` next to them, in the
reversible nested layout of ``reference/checkpoint_io.py`` (s2mel's {"net": {"cfm": sd}} as
"net/cfm/<key>", BigVGAN's weight_g/weight_v as they are). Every loader reads the twin first, so
after a conversion no pickle is opened to run the model. The pickles are read once, here, with
``torch.load(weights_only=True)``; each twin is read back and compared bit for bit before it
counts, and recorded in ``checkpoints.lock.json`` with the sha256 of the pickle it came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indextts_trt.runtime.indextts2.config import load_config
from indextts_trt.runtime.indextts2.layout import CheckpointLayout

from indextts_trt.runtime.files import sha256_file
from .verify import LOCK_NAME, PICKLE_SUFFIXES, read_lock, twin_entry, write_lock


class ConvertError(RuntimeError):
    pass


@dataclass(frozen=True)
class Converted:
    role: str
    source: Path
    target: Path
    tensors: int
    bytes: int
    seconds: float


def pickled_files(root: str | Path) -> dict[str, Path]:
    """The released pickles of a checkpoint directory, by CheckpointLayout.required_files name."""
    lay = CheckpointLayout(Path(root))
    cfg = load_config(lay.config())
    return {role: p for role, p in lay.required_files(cfg).items() if p.suffix in PICKLE_SUFFIXES}


def identical(a: object, b: object, at: str = "") -> str | None:
    """None when ``a`` and ``b`` are the same nesting with bit-identical tensors, else where they differ."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"'{at}': tensor vs {type(b if isinstance(a, torch.Tensor) else a).__name__}"
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"'{at}': {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
        # compare the bytes, so NaN payloads and -0.0 count too
        def raw(t):
            return t.contiguous().view(-1).view(torch.uint8)

        same = a.numel() == 0 or torch.equal(raw(a), raw(b))
        return None if same else f"'{at}': values differ"
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"'{at}': keys {sorted(set(a) ^ set(b))[:5]} differ"
        return next((d for k in a if (d := identical(a[k], b[k], f"{at}/{k}" if at else str(k)))), None)
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        if len(a) != len(b):
            return f"'{at}': {len(a)} vs {len(b)} items"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := identical(x, y, f"{at}/{i}"))), None)
    return None if (type(a) is type(b) and a == b) else f"'{at}': {a!r} vs {b!r}"


def convert(root: str | Path, to: str = "safetensors", *, log: Callable[[str], None] | None = None) -> list[Converted]:
    """Write and check the twins; update the lock when there is one. Raises ConvertError naming the file."""
    from indextts_trt.reference.checkpoint_io import (
        CheckpointError,
        converted_path,
        load_pickled,
        save_nested_safetensors,
        torch_load,
    )

    if to != "safetensors":
        raise ConvertError(f"--to {to!r}: the only target format is safetensors")
    root = Path(root)
    if not (root / "config.yaml").is_file():
        raise ConvertError(f"{root} is not a checkpoint directory (no config.yaml)")
    done: list[Converted] = []
    lock_files: dict[str, dict] = {}
    for role, src in pickled_files(root).items():
        if not src.is_file():
            raise ConvertError(f"{role}: {src} not found")
        t0 = time.perf_counter()
        dst = converted_path(src)
        try:
            obj = torch_load(src, role)
            sha = sha256_file(src)
            save_nested_safetensors(obj, dst, str(src), {"indextts_trt.source": src.name,
                                                         "indextts_trt.source_sha256": sha})
            back, read = load_pickled(src, role)  # what every loader now gets
        except CheckpointError as e:
            raise ConvertError(str(e)) from None
        diff = identical(obj, back) if read == dst else f"the loaders read {read}, not {dst}"
        if diff is not None:
            dst.unlink(missing_ok=True)
            raise ConvertError(f"{dst} does not read back as {src} ({diff}); removed it")
        n = _count_tensors(obj)
        done.append(Converted(role, src, dst, n, dst.stat().st_size, time.perf_counter() - t0))
        lock_files[dst.relative_to(root).as_posix()] = twin_entry(dst, role, src.relative_to(root).as_posix(), sha)
        if log:
            log(f"  {src.relative_to(root).as_posix():<42s} -> {dst.name:<32s} {n:5d} tensors  "
                f"{dst.stat().st_size / 2**20:9.2f} MiB  {done[-1].seconds:6.1f} s  bit-identical")
        del obj, back
    lock = read_lock(root)
    if lock is not None:  # pin the twins too, so a later change to them is caught like any other
        write_lock(root, {**lock["files"], **lock_files}, "tts-export convert")
        if log:
            log(f"  {LOCK_NAME}: {len(lock_files)} twin(s) added")
    return done


def _count_tensors(obj: object) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, dict):
        return sum(_count_tensors(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count_tensors(v) for v in obj)
    return 0
