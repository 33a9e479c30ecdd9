"""The TensorRT build plan: what to build, decided in plain code from the stage specs.

Per stage: the ONNX graph the engine is built from (the fp32 graph, or the fp16/bf16 graph that
``mixed_precision.convert`` made with its fp32 islands: TensorRT builds it strongly typed, so the
precision is the graph's types and no builder flag), optimization profiles (min/opt/max of every
input, from the spec's named dims; two profiles where one range would size every buffer and tactic
for the longest request), whether TF32 may be used, the workspace limit and the engine's cache key.
Nothing here imports TensorRT; the thin builder (``trt_build.py``) only applies this plan.
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
BUILDER_OPTIMIZATION_LEVEL = 3
PRECISIONS = ("fp32", "fp16", "bf16")


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
    graph: str  # the ONNX file the engine is built from, e.g. dit_step.onnx or dit_step.fp16.onnx
    graph_sha256: str
    graph_precision: str  # fp32 | fp16 | bf16: what the graph's float types are (islands stay fp32 in it)
    profiles: list[Profile]
    workspace_bytes: int
    builder_optimization_level: int = BUILDER_OPTIMIZATION_LEVEL
    tf32: bool = False  # TF32 for the graph's fp32 layers; off by default (fp32 tolerances assume real fp32)
    engine: str = ""
    io: dict = field(default_factory=dict)  # tensor -> dtype at the engine boundary, read from the graph
    notes: list[str] = field(default_factory=list)

    def builder_flags(self) -> dict:
        """The builder settings besides profiles and workspace (what ``trt_build`` sets)."""
        return {"strongly_typed": True, "tf32": self.tf32, "level": self.builder_optimization_level}

    def cache_key(self, trt_version: str, compute_capability: str) -> str:
        """Exactly what shapes the engine: the graph's bytes (its types included), the profiles,
        the builder flags, the workspace, TensorRT's version and the GPU's compute capability; not
        the file names, notes or the boundary dtypes (the graph's bytes already fix them)."""
        blob = json.dumps({"schema": PLAN_SCHEMA, "graph": self.graph_sha256, "flags": self.builder_flags(),
                           "profiles": [asdict(p) for p in self.profiles], "workspace": self.workspace_bytes,
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


def graph_io(onnx_path: str | Path) -> dict[str, str]:
    """Each graph input/output's dtype as the graph file declares it (numpy names)."""
    import onnx
    from onnx import helper

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    return {v.name: str(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)) if v.type.tensor_type.elem_type
            != onnx.TensorProto.BFLOAT16 else "bfloat16" for v in list(g.input) + list(g.output)}


def make_plan(engine_dir: str | Path, manifest: dict, specs: dict[str, StageSpec], precision: str,
              graphs: dict[str, dict] | None = None, tf32: bool = False) -> dict:
    """The whole build plan for the stages in ``manifest``.

    ``graphs``: stage -> {"onnx": file, "sha256": ..., "precision": ..., "note": ...}, the graph to
    build for ``precision`` (what ``mixed_precision.convert`` wrote; a stage no island set saves
    names its fp32 graph here, with the reason in "note"). Required for fp16/bf16; fp32 builds
    the manifest's fp32 graphs."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected fp32, fp16 or bf16")
    engine_dir = Path(engine_dir)
    stages = {}
    for name, entry in manifest["stages"].items():
        spec = specs[name]
        if precision == "fp32":
            g = {"onnx": entry["onnx"], "sha256": entry["files"][entry["onnx"]], "precision": "fp32"}
        else:
            g = (graphs or {}).get(name)
            if g is None:
                raise ValueError(f"stage {name}: no {precision} graph; convert it first "
                                 f"(indextts_trt.export.mixed_precision.convert)")
        if g["precision"] not in (precision, "fp32"):
            raise ValueError(f"stage {name}: the graph {g['onnx']} is {g['precision']}, the plan is for {precision}")
        path = engine_dir / g["onnx"]
        if not path.is_file():
            raise ValueError(f"stage {name}: {path} does not exist")
        notes = [g["note"]] if g.get("note") else []
        if precision != "fp32" and g["precision"] == "fp32" and not notes:
            raise ValueError(f"stage {name}: built fp32 in a {precision} plan without a reason")
        plan = StagePlan(
            stage=name, graph=g["onnx"], graph_sha256=g["sha256"], graph_precision=g["precision"],
            profiles=profiles_for(spec), workspace_bytes=WORKSPACE.get(name, DEFAULT_WORKSPACE), tf32=tf32,
            engine=f"{name}.{g['precision']}{'.tf32' if tf32 else ''}.engine", io=graph_io(path), notes=notes)
        stages[name] = plan.to_json()
    return {"schema": PLAN_SCHEMA, "precision": precision, "tf32": tf32, "timing_cache": TIMING_CACHE,
            "stages": stages}


def write_plan(engine_dir: str | Path, plan: dict) -> Path:
    path = Path(engine_dir) / PLAN_FILE
    write_bytes_atomic(path, json.dumps(plan, indent=1).encode())
    return path


__all__ = ["StagePlan", "profiles_for", "island_nodes", "graph_io", "make_plan", "write_plan", "PROFILE_SPLITS",
           "PRECISIONS"]
