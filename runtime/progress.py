"""A progress line for work that reports no steps of its own (text normalization of a long text).

WeTextProcessing's grammar normalizes the whole text in one call, which takes minutes on a long
English text (superlinear in its length), so there is nothing to count: :func:`busy` shows the
elapsed time on one line, refreshed every second from a thread, until the block ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def busy(desc: str, enabled: bool = True, every: float = 1.0) -> Iterator[None]:
    if not enabled:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}", leave=False)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            bar.refresh()

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        bar.close()


__all__ = ["busy"]
