"""Which of a stage's int8 graphs the build keeps (``tts-export build --precision int8 --int8-pick``).

``first``: the first trial of ``int8_quant.trials`` that passes the gate, as the fp16 islands
are chosen. It is reproducible on any machine, but it is not the fastest: on an AVX2 CPU without
VNNI the full-size GPT prefill's first pass, ``blocks`` with nothing excluded, is slower than fp32,
and ``rows`` with the heads and attention projections left fp32 passes too and is faster than both
(the README's int8 section; every trial's time: benchmarks/results/precision-int8-full-cpu.md).

``fastest`` (the default): each scheme climbs the exclusion levels until it passes. Every passing
graph and the fp32 graph are then timed at one parity point, on the build machine, with the
runtime's thread count. The build keeps the fastest, or the fp32 graph when it is faster than
every int8 graph. The choice then depends on the CPU, so its description is part of the graph's
cache key (``timing_key``). Two rules bound the trials:
- a scheme stops climbing once it passes, or once a graph it failed with is already no faster
  than the best so far (fp32 included). More exclusions only add fp32 work, so the scheme cannot
  win from there;
- no scheme climbs more than ``LEVELS_PAST_FIRST`` levels above the level of the first pass. At
  full size each trial is a conversion and a gate run of up to 2 GB of weights, so the
  far-excluded graphs, which are rarely fast, cost more build time than they are worth.
A new candidate replaces the best so far only when it is ``MARGIN`` faster. Below that the two
differ by no more than run-to-run noise, and the graph earlier in the ladder (fewer fp32 weights)
is kept. The fp32 graph wins only by the same margin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PICKS = ("fastest", "first")
MARGIN = 0.05
LEVELS_PAST_FIRST = 2
REPS = 3  # timed calls after one warm-up; the median is kept


@dataclass
class Attempt:
    """One trial's result: ``passed`` by the gate, its ``checks``, where its graph was written, and
    its time (ms at the timing point; None under ``first``)."""
    passed: bool
    checks: list
    where: Path
    ms: float | None = None
    name: str = ""
    scheme: str = ""
    paths: list = field(default_factory=list)
    nodes: list = field(default_factory=list)


def timing_threads() -> int:
    from indextts_trt.runtime.ort_backend import default_threads

    return default_threads()


def cpu_description() -> dict:
    """What the int8 products' speed depends on: the CPU model, its integer-dot-product
    extensions, and the thread count the graphs are timed with."""
    from .manifest import cpu_info

    model, flags = cpu_info()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return {"cpu": model, "int8_extensions": [f for f in wanted if f in flags], "threads": timing_threads()}


def timing_key(pick: str) -> dict:
    """The part of an int8 graph's cache key that the pick adds."""
    return {"pick": pick, **({"timed_on": cpu_description()} if pick == "fastest" else {})}


def time_graph(path: Path, feed: dict, threads: int | None = None) -> float:
    """ms per call of the graph on ``feed``: ONNX Runtime's CPU provider with the runtime's thread
    count, one warm-up call, then the median of ``REPS`` calls."""
    from .mixed_precision import ort_runner

    run = ort_runner(path, threads or timing_threads())
    run(feed)
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        run(feed)
        times.append(time.perf_counter() - t0)
    del run
    return 1000.0 * float(np.median(times))


def choose(tries: Sequence[tuple[str, str, list, list]], attempt: Callable[[tuple], Attempt], pick: str,
           fp32_ms: Callable[[], float]) -> tuple[list[Attempt], Attempt | None, float | None]:
    """Run the ladder ``tries`` (int8_quant.trials: (name, scheme, paths, nodes), levels of
    exclusions × schemes) with ``attempt`` (convert, gate, and under ``fastest`` time one try).
    Returns every attempt in order, the one kept (None: no int8 graph passed or fp32 is faster)
    and fp32's time (None under ``first``, or when nothing passed)."""
    if pick not in PICKS:
        raise ValueError(f"int8 pick {pick!r}: use one of {', '.join(PICKS)}")
    done: list[Attempt] = []
    best: Attempt | None = None
    passed, floor = set(), {}  # schemes that passed; a scheme's time when it last failed
    level, last_nodes, first_level = -1, None, None
    ref = None  # fp32's ms, measured once something has passed
    for t in tries:
        name, scheme, paths, nodes = t
        if tuple(nodes) != last_nodes:
            level, last_nodes = level + 1, tuple(nodes)
        if pick == "fastest" and first_level is not None and level > first_level + LEVELS_PAST_FIRST:
            break
        bound = min(x for x in (best.ms if best else None, ref, float("inf")) if x is not None)
        if scheme in passed or (scheme in floor and not floor[scheme] < bound * (1 - MARGIN)):
            continue
        a = attempt(t)
        a.name, a.scheme, a.paths, a.nodes = name, scheme, list(paths), list(nodes)
        done.append(a)
        if not a.passed:
            floor[scheme] = a.ms if a.ms is not None else 0.0
            continue
        if pick == "first":
            return done, a, None
        passed.add(scheme)
        if first_level is None:
            first_level, ref = level, fp32_ms()
        if best is None or a.ms < best.ms * (1 - MARGIN):
            best = a
    if best is not None and ref < best.ms * (1 - MARGIN):
        return done, None, ref
    return done, best, ref


__all__ = ["PICKS", "MARGIN", "LEVELS_PAST_FIRST", "Attempt", "choose", "time_graph", "timing_key",
           "cpu_description"]
