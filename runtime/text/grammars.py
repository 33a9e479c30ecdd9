"""The normalization grammars upstream runs: WeTextProcessing (``tn``) on Linux, ``wetext`` elsewhere.

Upstream (``indextts/utils/front.py`` ``TextNormalizer.load``) builds, on Linux,
``tn.chinese.normalizer.Normalizer(remove_interjections=False, remove_erhua=False)`` — settings
whose grammar is not shipped, so the first use compiles it (about a minute) into a cache folder —
and ``tn.english.normalizer.Normalizer()`` (shipped). On macOS/Windows it uses ``wetext``, the
offline runtime of the same grammars, whose output differs on some inputs.

We keep the compiled Chinese grammar in a per-user cache (``$INDEXTTS_TRT_CACHE`` or
``$XDG_CACHE_HOME/indextts-trt`` or ``~/.cache/indextts-trt``), keyed by the WeTextProcessing and
pynini versions and the settings, built once per machine under a file lock into a temporary folder
that is renamed into place, so concurrent first uses neither build twice nor read half a file.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

ZH_FILES = ("zh_tn_tagger.fst", "zh_tn_verbalizer.fst")


def cache_root() -> Path:
    if os.environ.get("INDEXTTS_TRT_CACHE"):
        return Path(os.environ["INDEXTTS_TRT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "indextts-trt"


@dataclass(frozen=True)
class Grammars:
    """One library's Chinese and English normalizers, as text → text functions."""

    name: str  # "WeTextProcessing 1.0.4.1" or "wetext 0.1.8"
    zh: Callable[[str], str]
    en: Callable[[str], str]


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def zh_cache_dir() -> Path:
    """Where the Chinese grammar with upstream's settings lives for the installed versions."""
    key = f"wetextprocessing-{_version('WeTextProcessing')}-pynini-{_version('pynini')}-zh-tn-keep-interjections-erhua"
    return cache_root() / key


def _quiet_tn() -> None:
    # tn adds an INFO StreamHandler to its loggers on every load ("found existing fst ..."); keep
    # our own log lines only (a filter on the logger survives tn resetting its level)
    for name in ("wetext-zh_normalizer", "wetext-en_normalizer"):
        lg = logging.getLogger(name)
        if not any(getattr(f, "_indextts", False) for f in lg.filters):
            f = logging.Filter()
            f.filter = lambda r: r.levelno >= logging.WARNING  # type: ignore[method-assign]
            f._indextts = True  # type: ignore[attr-defined]
            lg.addFilter(f)


def _build_zh(cache_dir: Path):
    from tn.chinese.normalizer import Normalizer

    _quiet_tn()
    # overwrite_cache=False: tn loads both FSTs when they are there, else builds and writes them
    return Normalizer(cache_dir=str(cache_dir), remove_interjections=False, remove_erhua=False,
                      overwrite_cache=False)


def load_tn_zh():
    """The Chinese normalizer, from the cache or built once into it (with a log line: ~1 min)."""
    final = zh_cache_dir()
    if all((final / f).is_file() for f in ZH_FILES):
        return _build_zh(final)
    from filelock import FileLock

    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if all((final / f).is_file() for f in ZH_FILES):  # another process built it meanwhile
            return _build_zh(final)
        log.warning("building the Chinese text-normalization grammar (WeTextProcessing, upstream's settings) "
                    "into %s: about a minute, once per machine", final)
        t0 = time.perf_counter()
        # under the lock, so a fixed name is safe; mkdir gives the mode the umask asks for (mkdtemp's
        # private 0700 would stay on the cache after the rename)
        tmp = final.parent / f"{final.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            zh = _build_zh(tmp)
            if final.exists():  # an incomplete folder from an interrupted older layout
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.warning("Chinese grammar built in %.0f s", time.perf_counter() - t0)
        return zh


def load_tn() -> Grammars:
    from tn.english.normalizer import Normalizer as NormalizerEn

    zh = load_tn_zh()
    en = NormalizerEn(overwrite_cache=False)  # shipped inside the wheel: nothing to build
    return Grammars(f"WeTextProcessing {_version('WeTextProcessing')}", zh.normalize, en.normalize)


def load_wetext() -> Grammars:
    from wetext import Normalizer

    zh = Normalizer(remove_erhua=False, lang="zh", operator="tn")
    en = Normalizer(lang="en", operator="tn")
    return Grammars(f"wetext {_version('wetext')}", zh.normalize, en.normalize)


def load_grammars(backend: str = "auto") -> Grammars | None:
    """``auto``: upstream's choice for this platform (``tn`` on Linux, ``wetext`` elsewhere), the
    other one if that is not installed (with a warning: outputs differ), else None (a warning:
    numbers are then read as written). A backend named explicitly must be installed."""
    if backend not in ("auto", "tn", "wetext"):
        raise ValueError(f"text normalizer backend must be auto, tn or wetext, got {backend!r}")
    order = {"tn": [load_tn], "wetext": [load_wetext]}.get(backend)
    if order is None:
        order = [load_tn, load_wetext] if sys.platform.startswith("linux") else [load_wetext, load_tn]
    errors = []
    for i, loader in enumerate(order):
        try:
            g = loader()
        except ImportError as e:
            if backend != "auto":  # asked for by name: falling back would silently change the text
                raise ImportError(f"text normalizer backend {backend!r} is not installed ({e})") from e
            errors.append(f"{loader.__name__[5:]}: {e}")
            continue
        if i > 0:
            log.warning("text normalization uses %s (%s); upstream uses the other library on this platform, "
                        "whose output differs on some texts", g.name, "; ".join(errors))
        return g
    log.warning("text normalization disabled (%s); numbers and symbols are read as written", "; ".join(errors))
    return None
