"""Cross-request batching: the GPT decode steps and the DiT steps of several requests as one call.

A request in flight is a generator of *work items* (its variant writes it: ``indextts2/batched.py``).
The scheduler (``scheduler.py``) advances every request until each yields a batchable item, runs
the items of one kind together, and sends each request its share back:

- :class:`JoinDecode` — the request's prefilled cache enters the shared decode cache as ``rows``
  rows (its beams); the reply is its :class:`RowGroup`. Granted when the batch has room.
- :class:`DecodeStep` — one decode step of the request's rows (``mel_ids``, ``mel_pos``,
  ``cache_len`` per row); the reply is those rows' logits. Every row of the shared cache takes part
  in every step (the graph's ``kv`` has exactly B rows): a row whose request is busy elsewhere
  (synthesizing a streamed window) gets a stand-in input at its next free position, which the
  request's own next step overwrites, so its cache is untouched.
- :class:`DitStep` — one Euler step of the request's CFM; steps with the same ``cfg_rate`` (one
  value per graph call) run as one batch, each row padded to the longest and masked to its own
  ``x_lens``; the reply is the request's next ``x``.
- :class:`Audio` — not batched: a piece of the request's audio, passed on at once.

Requests join and leave between steps; the shared cache is rebuilt (one copy) when its set of
requests changes and grows like a single request's (``kvcache.next_capacity``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kvcache import FIRST_EXTRA, next_capacity


@dataclass
class JoinDecode:
    kv0: np.ndarray  # (L, 2, 1, H, S, hd) the prefill's cache, copied into every one of the rows
    rows: int


@dataclass
class DecodeStep:
    group: RowGroup
    feed: dict[str, np.ndarray]  # mel_ids (n, 1), mel_pos (n, 1), cache_len (n,)


@dataclass
class DitStep:
    x: np.ndarray  # (1, n_mels, T)
    t: np.float32
    dt: np.float32
    const: dict[str, np.ndarray]  # the request's other dit_step inputs (batch 1)


@dataclass
class Audio:
    wav: np.ndarray  # float32 samples
    segment: int


class RowGroup:
    """One request's rows in the shared decode cache. ``offset`` moves when other requests leave;
    the request addresses its rows 0..n-1."""

    def __init__(self, batch: DecodeBatch, kv0: np.ndarray, n: int):
        self.batch, self.kv0, self.n = batch, kv0, n
        self.offset = -1  # placed at the next step
        self.next_len = kv0.shape[4]  # the position the next step writes (valid positions before it)
        self.released = False

    def reorder(self, rows: np.ndarray, src: np.ndarray) -> None:
        """After a beam step: row ``rows[i]`` becomes a copy of row ``src[i]`` (the request's own)."""
        if self.offset < 0:  # not placed yet: its rows are still the prefill's copies, all equal
            return
        self.batch.cache.reorder(self.offset + np.asarray(rows), self.offset + np.asarray(src))

    def release(self) -> None:
        self.released = True


class DecodeBatch:
    """The decode stage's shared cache and the request rows in it, in row order."""

    def __init__(self, pipe, max_rows: int | None = None):
        self.pipe = pipe
        spec = pipe.specs["gpt_decode"]
        b, cap = spec.dim_map["B"], spec.dim_map["CAP"]
        self.max_rows = b.max if max_rows is None else min(max_rows, b.max)
        self.cap_max = cap.max
        self.cache = None
        self.groups: list[RowGroup] = []  # placed, in row order
        self.pending: list[RowGroup] = []  # joined since the last step

    @property
    def rows_in_use(self) -> int:
        return sum(g.n for g in self.groups + self.pending if not g.released)

    def can_join(self, n: int) -> bool:
        return self.rows_in_use + n <= self.max_rows

    def join(self, kv0: np.ndarray, n: int) -> RowGroup:
        if not self.can_join(n):
            raise RuntimeError(f"decode batch: {n} more rows do not fit ({self.rows_in_use} of {self.max_rows} used)")
        g = RowGroup(self, kv0, n)
        self.pending.append(g)
        return g

    def _capacity(self, need: int) -> int:
        cur = self.cache.capacity if self.cache is not None else 0
        if need <= cur <= 4 * need:  # shrink only when far too big: a rebuild copies the cache
            return cur
        return min(need + FIRST_EXTRA, self.cap_max)

    def _sync(self) -> None:
        """Place the rows that joined, drop the released ones (one rebuild), grow if needed."""
        live = [g for g in self.groups if not g.released]
        pending = [g for g in self.pending if not g.released]
        need = max([g.next_len + 1 for g in live + pending], default=0)
        if not live and not pending:
            self.close()
            return
        if pending or len(live) != len(self.groups) or self.cache is None:
            keep = np.concatenate([np.arange(g.offset, g.offset + g.n) for g in live] or [np.zeros(0, np.int64)])
            rows, cap = sum(g.n for g in live + pending), self._capacity(need)
            if self.cache is None:
                self.cache = self.pipe.stage("gpt_decode").new_cache(rows, cap)
            else:
                self.cache.rebuild(keep, rows, cap)
            off = 0
            for g in live + pending:
                g.offset, off = off, off + g.n
            for g in pending:
                self.cache.load_prefix(g.kv0, slice(g.offset, g.offset + g.n))
                g.kv0 = None
            self.groups, self.pending = live + pending, []
        elif need > self.cache.capacity:
            self.cache.grow(next_capacity(need, self.cache.capacity, self.cap_max))

    def step(self, steps: list[DecodeStep]) -> list[np.ndarray]:
        """One decode step of every row; returns each step's rows' logits, in ``steps`` order."""
        for s in steps:
            s.group.next_len = int(s.feed["cache_len"][0])
        self._sync()
        by_group = {id(s.group): s.feed for s in steps}
        parts = {"mel_ids": [], "mel_pos": [], "cache_len": []}
        for g in self.groups:
            feed = by_group.get(id(g))
            if feed is None:  # a stand-in row: writes at its next free position, which its next step overwrites
                feed = {"mel_ids": np.zeros((g.n, 1), np.int64), "mel_pos": np.zeros((g.n, 1), np.int64),
                        "cache_len": np.full(g.n, g.next_len, np.int64)}
            for k in parts:
                parts[k].append(feed[k])
        logits = self.pipe.run("gpt_decode", cache=self.cache, **{k: np.concatenate(v) for k, v in parts.items()},
                               fetch=("logits",))["logits"]
        for s in steps:
            s.group.next_len += 1
        return [logits[s.group.offset: s.group.offset + s.group.n] for s in steps]

    @property
    def rows(self) -> int:
        return sum(g.n for g in self.groups)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.cache, self.groups, self.pending = None, [], []


def dit_batches(steps: list[DitStep], max_batch: int) -> list[list[int]]:
    """Indices of ``steps`` grouped into graph calls: one ``cfg_rate`` per call (the graph takes
    one), at most ``max_batch`` rows each, in arrival order."""
    groups: dict[float, list[int]] = {}
    for i, s in enumerate(steps):
        groups.setdefault(float(s.const["cfg_rate"][0]), []).append(i)
    return [idx[j: j + max_batch] for idx in groups.values() for j in range(0, len(idx), max_batch)]


def run_dit(pipe, steps: list[DitStep]) -> list[np.ndarray]:
    """One dit_step call over ``steps`` (same cfg_rate): rows padded with zeros to the longest T
    and masked by their own ``x_lens``; returns each row's ``x_next`` at its own length."""
    T = max(s.x.shape[-1] for s in steps)

    def pad(a: np.ndarray, axis: int) -> np.ndarray:
        width = [(0, 0)] * a.ndim
        width[axis] = (0, T - a.shape[axis])
        return np.pad(a, width)

    feed = {"x": np.concatenate([pad(s.x, 2) for s in steps]),
            "prompt_x": np.concatenate([pad(s.const["prompt_x"], 2) for s in steps]),
            "cond": np.concatenate([pad(s.const["cond"], 1) for s in steps]),
            "t": np.array([s.t for s in steps], np.float32), "dt": np.array([s.dt for s in steps], np.float32),
            "cfg_rate": steps[0].const["cfg_rate"]}
    for k in ("x_lens", "prompt_len", "style"):
        feed[k] = np.concatenate([s.const[k] for s in steps])
    out = pipe.run("dit_step", fetch=("x_next",), **feed)["x_next"]
    return [out[i: i + 1, :, : s.x.shape[-1]] for i, s in enumerate(steps)]


__all__ = ["JoinDecode", "DecodeStep", "DitStep", "Audio", "RowGroup", "DecodeBatch", "dit_batches", "run_dit"]
