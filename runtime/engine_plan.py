"""What the runtime needs of a TensorRT build plan: profiles, their selection, compatibility.

``export/trt_plan.py`` writes ``trt_plan.json``; the runtime reads it here: the optimization
profiles of each engine, which profile serves a request (the tightest covering one), and whether
an engine recorded in the manifest can run on this machine's TensorRT and GPU. Plain code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PLAN_SCHEMA = 2  # 2: the graph file decides the precision (TensorRT 10 strongly typed / 11)
PLAN_FILE = "trt_plan.json"


@dataclass(frozen=True)
class Profile:
    name: str
    dims: dict  # dim -> [min, opt, max]
    shapes: dict  # input -> {"min": [...], "opt": [...], "max": [...]}

    def covers(self, sizes: dict) -> bool:
        return all(lo <= sizes[d] <= hi for d, (lo, _, hi) in self.dims.items() if d in sizes)


def select_profile(profiles: list[Profile], sizes: dict) -> int:
    """The covering profile with the smallest range (its buffers and tactics fit the request best)."""
    fits = [i for i, p in enumerate(profiles) if p.covers(sizes)]
    if not fits:
        ranges = "; ".join(f"{p.name}: {p.dims}" for p in profiles)
        raise ValueError(f"no optimization profile covers {sizes} ({ranges})")
    return min(fits, key=lambda i: sum(hi - lo for lo, _, hi in profiles[i].dims.values()))


def select_profile_shapes(profiles: list[dict[str, tuple]], shapes: dict[str, tuple]) -> int:
    """The profile (per input name: (min, opt, max) shapes, as an engine reports them) that covers
    every input shape in ``shapes``, the tightest of those (fewest elements between min and max)."""
    def covers(p):
        return all(all(lo <= n <= hi for lo, n, hi in zip(p[k][0], shape, p[k][2])) for k, shape in shapes.items()
                   if k in p)

    fits = [i for i, p in enumerate(profiles) if covers(p)]
    if not fits:
        raise ValueError(f"no optimization profile of the engine covers {shapes}")
    volume = lambda p: sum(int(np.prod(hi)) - int(np.prod(lo)) for lo, _, hi in p.values())  # noqa: E731
    return min(fits, key=lambda i: volume(profiles[i]))


def load_plan(engine_dir: str | Path) -> dict:
    path = Path(engine_dir) / PLAN_FILE
    if not path.is_file():
        from .workdirs import build_command

        raise FileNotFoundError(f"{path}: no TensorRT build plan; run `{build_command(engine_dir, precision='fp16')}`")
    plan = json.loads(path.read_text())
    if plan.get("schema", 0) > PLAN_SCHEMA:
        raise ValueError(f"{path}: plan schema {plan['schema']} is newer than this tool ({PLAN_SCHEMA}); upgrade")
    if plan.get("schema", 0) < PLAN_SCHEMA:
        from .workdirs import build_command

        again = build_command(engine_dir, precision=plan.get("precision", "fp16"), command="plan")
        raise ValueError(f"{path}: plan schema {plan.get('schema')} predates precision-in-the-graph ({PLAN_SCHEMA}); "
                         f"rerun `{again}`")
    return plan


def engine_compat_error(built: dict | None, trt_version: str, gpu_name: str, compute_capability: str,
                        engine_dir: str | Path = "engines") -> str | None:
    """Why a built engine (its manifest record: stage, precision, TensorRT version, GPU, compute
    capability) cannot run here, with the rebuild command; None if it can. Engines are not portable
    across TensorRT versions or compute capabilities."""
    if not built:
        return "no engine was built"
    problems = []
    if built.get("version") != trt_version:
        problems.append(f"TensorRT {built.get('version')} (this machine has {trt_version})")
    if built.get("compute_capability") != compute_capability:
        problems.append(f"a GPU of compute capability {built.get('compute_capability')} ({built.get('gpu')}; this "
                        f"one is {compute_capability}, {gpu_name})")
    if not problems:
        return None
    from .workdirs import build_command

    return (f"stage {built.get('stage', '?')}: the engine was built for " + " and ".join(problems)
            + f". Rebuild it here: `{build_command(engine_dir, precision=built.get('precision', 'fp16'))}`")


__all__ = ["Profile", "select_profile", "select_profile_shapes", "load_plan", "engine_compat_error", "PLAN_FILE", "PLAN_SCHEMA"]
