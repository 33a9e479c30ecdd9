"""Serving metrics: counters, gauges and observed values, rendered in Prometheus' text format.

Written by the scheduler's worker thread and read by the server, so every access takes one lock.
Observed values keep their count and sum (the Prometheus summary) and the last ``WINDOW`` values
for the quantiles; nothing grows without bound.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

WINDOW = 1000
QUANTILES = (0.5, 0.95)
PREFIX = "tts_"

HELP = {
    "requests_total": "requests by outcome (ok, failed, cancelled, rejected: the queue was full)",
    "queue_depth": "requests waiting for a place in the batch",
    "active": "requests in flight (in the batch)",
    "decode_rows_in_use": "rows of the shared decode cache held by requests now",
    "decode_rows": "rows of each GPT decode step (beams of every request in it)",
    "decode_requests": "requests whose rows stepped in each GPT decode step",
    "dit_batch": "requests in each DiT step call",
    "time_to_first_audio_s": "seconds from a request's arrival to its first audio",
    "rtf": "real-time factor of a request: seconds in the batch per second of audio",
    "request_s": "seconds from a request's arrival to its last audio",
}


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        self._obs: dict[str, tuple[int, float, deque]] = {}

    def count(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + n

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = float(value)

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            n, total, recent = self._obs.get(name, (0, 0.0, deque(maxlen=WINDOW)))
            recent.append(float(value))
            self._obs[name] = (n + 1, total + float(value), recent)

    def snapshot(self) -> dict:
        """Everything as plain numbers (the JSON twin of :meth:`prometheus`)."""
        with self._lock:
            obs = {k: {"count": n, "sum": s, **{f"p{int(q * 100)}": float(np.quantile(list(r), q)) for q in QUANTILES}}
                   for k, (n, s, r) in self._obs.items() if r}
            return {"requests": dict(self._counts), "gauges": dict(self._gauges), "observed": obs}

    def prometheus(self, extra_gauges: dict[str, float] | None = None) -> str:
        snap = self.snapshot()
        lines = [f"# HELP {PREFIX}requests_total {HELP['requests_total']}", f"# TYPE {PREFIX}requests_total counter"]
        lines += [f'{PREFIX}requests_total{{outcome="{k}"}} {v}' for k, v in sorted(snap["requests"].items())]
        for name, value in sorted({**snap["gauges"], **(extra_gauges or {})}.items()):
            lines += [f"# HELP {PREFIX}{name} {HELP.get(name, name)}", f"# TYPE {PREFIX}{name} gauge",
                      f"{PREFIX}{name} {value:g}"]
        for name, o in sorted(snap["observed"].items()):
            lines += [f"# HELP {PREFIX}{name} {HELP.get(name, name)}", f"# TYPE {PREFIX}{name} summary"]
            lines += [f'{PREFIX}{name}{{quantile="{q:g}"}} {o[f"p{int(q * 100)}"]:g}' for q in QUANTILES]
            lines += [f"{PREFIX}{name}_sum {o['sum']:g}", f"{PREFIX}{name}_count {o['count']}"]
        return "\n".join(lines) + "\n"


__all__ = ["Metrics"]
