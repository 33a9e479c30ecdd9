"""The TensorRT build plan: what to build, decided in plain code from the stage specs.

Per stage: optimization profiles (min/opt/max of every input, from the spec's named dims; two
profiles where one range would size every buffer and tactic for the longest request), the
precision and its fp32 islands (module paths from the precision analysis, resolved to ONNX node
names through the exporter's ``name_scopes`` metadata, which TensorRT's parser keeps as layer
names), the workspace limit and the engine's cache key. Nothing here imports TensorRT; the thin
builder (``trt_build.py``) only applies this plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indextts_trt.runtime.engine_plan import PLAN_FILE, PLAN_SCHEMA, Profile
from indextts_trt.runtime.files import write_bytes_atomic
from indextts_trt.runtime.spec import StageSpec
TIMING_CACHE = "timing.cache"
GiB = 2**30

# stage -> (dim, boundary): a "short" profile up to the boundary and a "long" one from it. Short
# requests then get tactics tuned for their size, and the long profile exists only where needed.
PROFILE_SPLITS = {"dit_step": ("T", 1024), "bigvgan": ("T_mel", 1024), "gpt_decode": ("CAP", 1024),
                  "length_regulator": ("T_out", 1024)}
WORKSPACE = {"dit_step": 8 * GiB, "bigvgan": 8 * GiB, "semantic_encoder": 4 * GiB}
DEFAULT_WORKSPACE = 2 * GiB
# integer outputs must be exact: a stage the analysis cannot make pass stays fp32 as a whole
BUILDER_OPTIMIZATION_LEVEL = 3


def profiles_for(spec: StageSpec) -> list[Profile]:
    """The optimization profiles of a stage; every input shape at min/opt/max of each profile."""
    ranges = {d.name: (d.min, d.opt, d.max) for d in spec.free_dims}
    variants = [("all", ranges)]
    split = PROFILE_SPLITS.get(spec.name)
    if split:
        dim, b = split
        lo, opt, hi = ranges[dim]
        if lo < b < hi:
            short = {**ranges, dim: (lo, min(max(opt, lo), b), b)}
            long_ = {**ranges, dim: (b, min(max(2 * b, b), hi), hi)}
            variants = [("short", short), ("long", long_)]
    out = []
    for name, rng in variants:
        shapes = {}
        for t in spec.inputs:
            shapes[t.name] = {p: [d if isinstance(d, int) else rng[d][i] for d in t.shape]
                              for i, p in enumerate(("min", "opt", "max"))}
        out.append(Profile(name, {k: list(v) for k, v in rng.items()}, shapes))
    return out


def island_nodes(onnx_path: str | Path, islands: list[str]) -> list[str]:
    """ONNX node names that belong to the module paths in ``islands`` ('' = every node)."""
    import onnx

    if not islands:
        return []
    g = onnx.load(str(onnx_path), load_external_data=False).graph
    keep = set(islands)
    names = []
    for n in g.node:
        if "" in keep:
            names.append(n.name)
            continue
        scopes = next((p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes is None:
            continue
        # a literal list of strings, e.g. ['', 'est', 'est.transformer', ...]
        paths = [s.strip().strip("'\"") for s in scopes.strip("[]").split(",")]
        if any(p in keep for p in paths):
            names.append(n.name)
    return names


@dataclass
class StagePlan:
    stage: str
    onnx: str
    onnx_sha256: str
    precision: str  # fp32 | fp16 | bf16: the builder flag
    fp32_islands: list[str]  # module paths ('' = the whole stage)
    fp32_nodes: list[str]  # the ONNX node (TensorRT layer) names they resolve to
    profiles: list[Profile]
    workspace_bytes: int
    builder_optimization_level: int = BUILDER_OPTIMIZATION_LEVEL
    engine: str = ""
    io: dict = field(default_factory=dict)  # tensor -> dtype at the engine boundary (kept as the graph's)
    notes: list[str] = field(default_factory=list)

    def cache_key(self, trt_version: str, compute_capability: str) -> str:
        """Everything that changes the engine: graph bytes, precision and islands, profiles,
        workspace, optimization level, TensorRT version and the GPU's compute capability."""
        blob = json.dumps({"schema": PLAN_SCHEMA, "onnx": self.onnx_sha256, "precision": self.precision,
                           "nodes": sorted(self.fp32_nodes), "profiles": [asdict(p) for p in self.profiles],
                           "workspace": self.workspace_bytes, "level": self.builder_optimization_level,
                           "trt": trt_version, "cc": compute_capability}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_json(self) -> dict:
        d = asdict(self)
        d["profiles"] = [asdict(p) for p in self.profiles]
        return d

    @classmethod
    def from_json(cls, d: dict) -> StagePlan:
        d = dict(d)
        d["profiles"] = [Profile(**p) for p in d["profiles"]]
        return cls(**d)


def make_plan(engine_dir: str | Path, manifest: dict, specs: dict[str, StageSpec], precision: str,
              analysis: dict | None = None) -> dict:
    """The whole build plan for the stages in ``manifest``. ``analysis``: stage -> the precision
    analysis' JSON (``StagePrecision.to_json()``); required for fp16/bf16."""
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"unknown precision {precision!r}: expected fp32, fp16 or bf16")
    engine_dir = Path(engine_dir)
    stages = {}
    for name, entry in manifest["stages"].items():
        spec = specs[name]
        islands, notes = [], []
        stage_precision = precision
        if precision != "fp32":
            a = (analysis or {}).get(name)
            if a is None:
                raise ValueError(f"stage {name}: no {precision} analysis; run the precision analysis first")
            if a["precision"] != precision:
                raise ValueError(f"stage {name}: the analysis is for {a['precision']}, the plan for {precision}")
            islands = list(a["islands"])
            if islands == [""]:
                stage_precision, islands = "fp32", []
                notes.append(f"{precision} fails even with every island; built fp32 ({a.get('note', '')})")
            elif islands:
                notes.append(f"fp32 islands: {', '.join(a['groups'])} ({len(islands)} modules)")
        onnx_file = engine_dir / entry["onnx"]
        plan = StagePlan(
            stage=name, onnx=entry["onnx"], onnx_sha256=entry["files"][entry["onnx"]], precision=stage_precision,
            fp32_islands=islands, fp32_nodes=island_nodes(onnx_file, islands) if islands else [],
            profiles=profiles_for(spec), workspace_bytes=WORKSPACE.get(name, DEFAULT_WORKSPACE),
            engine=f"{name}.{stage_precision}.engine",
            io={t.name: t.dtype for t in spec.inputs + spec.outputs}, notes=notes)
        if islands and not plan.fp32_nodes:
            raise ValueError(f"stage {name}: the fp32 islands {islands[:3]}... match no node of {onnx_file.name}; "
                             "the graph lacks name_scopes metadata or the analysis is for another model")
        stages[name] = plan.to_json()
    return {"schema": PLAN_SCHEMA, "precision": precision, "timing_cache": TIMING_CACHE, "stages": stages}


def write_plan(engine_dir: str | Path, plan: dict) -> Path:
    path = Path(engine_dir) / PLAN_FILE
    write_bytes_atomic(path, json.dumps(plan, indent=1).encode())
    return path


__all__ = ["StagePlan", "profiles_for", "island_nodes", "make_plan", "write_plan", "PROFILE_SPLITS"]
