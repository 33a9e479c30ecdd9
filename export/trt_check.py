"""TensorRT readiness: every node of every graph, subgraphs (If/Loop/Scan bodies) included, against
the TensorRT ONNX parser's operator table (``data/trt_onnx_ops.json``, with its source): the
operator, the tensor types it takes (so an fp16/bf16 graph is checked in its own types) and the
restrictions the table records. Pure ONNX inspection: no TensorRT needed.

Every restriction of an operator our graphs use is checked here; for any other restricted operator
that appears, the check fails and quotes the restriction (it cannot be verified automatically).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import onnx

_TYPE_NAMES = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
               onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL",
               onnx.TensorProto.DOUBLE: "DOUBLE", onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.INT8: "INT8"}

# what to do when the check finds one of these (kept next to the check so the advice stays true)
WORKAROUNDS = {
    "AveragePool": "1-D pooling is not parsed: pool as 2-D on an unsqueezed axis, or reshape into segments and "
                   "take a mean (CAMPPlus' segment pooling does the latter)",
    "BitwiseNot": "use logical Not on a bool tensor (compare/invert masks before casting)",
    "DOUBLE": "keep the graph in float32: cast float64 constants at export",
    "domain": "custom-domain op: replace it with standard ONNX ops before export",
    "constant": "make it a constant at export (an initializer), e.g. a Python int instead of a traced size",
}


@dataclass(frozen=True)
class Finding:
    stage: str
    node: str
    op: str
    problem: str
    workaround: str


@lru_cache(maxsize=1)
def trt_table() -> dict:
    return json.loads((Path(__file__).parent / "data" / "trt_onnx_ops.json").read_text())


class _Graph:
    """A graph's node list with what the restriction checks ask: value types (outer scopes
    included) and which tensors are constants."""

    def __init__(self, g: onnx.GraphProto, types: dict[str, str], consts: set[str]):
        self.g, self.types = g, dict(types)
        for v in list(g.input) + list(g.output) + list(g.value_info):
            t = v.type.tensor_type.elem_type
            if t:
                self.types[v.name] = _TYPE_NAMES.get(t, onnx.TensorProto.DataType.Name(t))
        for i in g.initializer:
            self.types[i.name] = _TYPE_NAMES.get(i.data_type, onnx.TensorProto.DataType.Name(i.data_type))
        self.consts = set(consts) | {i.name for i in g.initializer} | \
            {n.output[0] for n in g.node if n.op_type == "Constant"}

    def const(self, name: str) -> bool:
        return name in self.consts


def _graphs(model: onnx.ModelProto) -> Iterator[tuple[str, _Graph]]:
    """The main graph and every subgraph, depth first, each with its path ('' for the main one)."""
    inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=False)
    stack = [("", _Graph(inferred.graph, {}, set()))]
    while stack:
        path, g = stack.pop()
        yield path, g
        for n in g.g.node:
            for a in n.attribute:
                subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs) \
                    if a.type == onnx.AttributeProto.GRAPHS else []
                for k, sub in enumerate(subs):
                    name = f"{path}{n.name or n.output[0]}/{a.name}" + (f"[{k}]" if len(subs) > 1 else "") + "/"
                    stack.append((name, _Graph(sub, g.types, g.consts)))


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _input(node: onnx.NodeProto, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


# ------------------------------------------------------------------ restriction checks
# each returns the problem (a string) or None; keyed by operator, for the restrictions in the table


def _pool(node, g):
    k = _attr(node, "kernel_shape") or []
    if len(k) not in (2, 3):
        return f"{len(k)}-D pooling (TensorRT pools 2-D or 3-D only)"
    if any(d != 1 for d in _attr(node, "dilations") or []):
        return "dilations other than 1"
    if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
        return "the Indices output"
    return None


def _const_input(i: int, what: str):
    def check(node, g):
        x = _input(node, i)
        return f"{what} ({x}) is not a constant" if x and not g.const(x) else None
    return check


def _axes(node, g):
    if _attr(node, "axes") is not None:  # the opset-13-and-older attribute form
        return None
    return _const_input(1, "axes")(node, g)


def _lp_pool(node, g):
    return "dilations other than 1" if any(d != 1 for d in _attr(node, "dilations") or []) else None


def _constant(node, g):
    bad = [a.name for a in node.attribute if a.name in ("sparse_value", "value_string", "value_strings")]
    return f"attribute {bad[0]}" if bad else None


def _dropout(node, g):
    x = _input(node, 2)
    return f"training_mode ({x}) is not an initializer" if x and x not in {i.name for i in g.g.initializer} else None


def _layer_norm(node, g):
    return "Mean/InvStdDev outputs are used" if len([o for o in node.output if o]) > 1 else None


def _scatter(node, g):
    r = _attr(node, "reduction", "none")
    return f"reduction {r!r}" if r != "none" else None


def _topk(node, g):
    if _attr(node, "sorted", 1) != 1:
        return "sorted=0"
    return _const_input(1, "K")(node, g)


def _resize(node, g):
    ctm = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if ctm not in ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"):
        return f"coordinate_transformation_mode {ctm!r}"
    if _attr(node, "mode", "nearest") not in ("nearest", "linear"):
        return f"mode {_attr(node, 'mode')!r}"
    if _attr(node, "nearest_mode", "round_prefer_floor") not in ("floor", "ceil", "round_prefer_floor",
                                                                 "round_prefer_ceil"):
        return f"nearest_mode {_attr(node, 'nearest_mode')!r}"
    if _attr(node, "antialias", 0):
        return "antialias"
    if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        return f"keep_aspect_ratio_policy {_attr(node, 'keep_aspect_ratio_policy')!r}"
    return None


def _seed_ignored(node, g):
    return None  # the parser accepts it; only the seed is ignored (not a parse failure)


RESTRICTION_CHECKS: dict[str, Callable] = {
    "AveragePool": _pool, "MaxPool": _pool, "LpPool": _lp_pool, "Constant": _constant,
    "CumSum": _const_input(1, "axis"), "Dropout": _dropout, "LayerNormalization": _layer_norm,
    "OneHot": _const_input(1, "depth"), "ScatterND": _scatter, "TopK": _topk, "Resize": _resize,
    "Squeeze": _axes, "Unsqueeze": _axes,
    **{op: _axes for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                            "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
    **{op: _seed_ignored for op in ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")},
}

# shape/index operands (Gather indices, Slice starts, Reshape shapes, ...) are not in the per-op type lists
_INDEX_OPERAND_OPS = {"Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Slice", "Reshape",
                      "Expand", "Tile", "Pad", "Unsqueeze", "Squeeze", "ReduceMean", "ReduceSum", "ReduceMax",
                      "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1", "Resize", "TopK", "Split", "ConstantOfShape",
                      "Range", "OneHot", "CumSum", "Trilu", "Where"}


def check_model(model: onnx.ModelProto, stage: str) -> list[Finding]:
    table = trt_table()
    ops = table["operators"]
    lo, hi = table["opset_range"]
    out: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not lo <= opset <= hi:
        out.append(Finding(stage, "<model>", "opset", f"opset {opset} outside TensorRT's {lo}..{hi}",
                           f"export with opset {hi}"))
    for path, g in _graphs(model):
        for node in g.g.node:
            name = path + (node.name or node.output[0])
            if node.domain not in ("", "ai.onnx"):
                out.append(Finding(stage, name, node.op_type, f"custom domain {node.domain!r}", WORKAROUNDS["domain"]))
                continue
            info = ops.get(node.op_type)
            if info is None or not info["supported"]:
                out.append(Finding(stage, name, node.op_type, "operator not supported by the TensorRT ONNX parser",
                                   WORKAROUNDS.get(node.op_type, "rewrite with supported operators")))
                continue
            out += _type_findings(stage, name, node, g, set(info["types"]))
            restriction = info.get("restriction")
            if restriction:
                check = RESTRICTION_CHECKS.get(node.op_type)
                problem = check(node, g) if check else f"restriction not checked automatically: {restriction}"
                if problem:
                    out.append(Finding(stage, name, node.op_type, problem,
                                       WORKAROUNDS.get(node.op_type, WORKAROUNDS["constant"] if "constant" in problem
                                                       else f"the parser requires: {restriction}")))
    return out


def _type_findings(stage: str, name: str, node: onnx.NodeProto, g: _Graph, allowed: set[str]) -> list[Finding]:
    out = []
    for tensor in list(node.input) + list(node.output):
        t = g.types.get(tensor)
        if tensor in node.output and t != "DOUBLE":
            continue  # the table lists input types (comparisons output BOOL, Shape INT64, ...)
        if t == "DOUBLE":
            out.append(Finding(stage, name, node.op_type, f"float64 tensor {tensor}", WORKAROUNDS["DOUBLE"]))
        elif t and allowed and t not in allowed and node.op_type not in ("Shape", "Cast", "Constant"):
            if t in ("INT64", "INT32") and node.op_type in _INDEX_OPERAND_OPS:
                continue
            out.append(Finding(stage, name, node.op_type, f"{t} tensor {tensor} (parser takes {sorted(allowed)})",
                               "cast to a supported type around this op (or keep it in an fp32 island)"))
    return out


def graph_files(engine_dir: Path, onnx_name: str) -> list[str]:
    """A stage's fp32 graph and the converted graphs beside it (``<stage>.fp16.onnx``, ...)."""
    stem = onnx_name[:-len(".onnx")]
    return [onnx_name] + [f"{stem}.{p}.onnx" for p in ("fp16", "bf16") if (engine_dir / f"{stem}.{p}.onnx").is_file()]


def check_engine_dir(engine_dir: str | Path) -> dict[str, list[Finding]]:
    """stage (or ``stage.fp16``) -> findings, for every graph the engines directory holds."""
    from indextts_trt.runtime.manifest import load_manifest

    engine_dir = Path(engine_dir)
    manifest = load_manifest(engine_dir)
    results = {}
    for name, st in manifest["stages"].items():
        for f in graph_files(engine_dir, st["onnx"]):
            key = name if f == st["onnx"] else f"{name}.{f.split('.')[-2]}"
            results[key] = check_model(onnx.load(str(engine_dir / f), load_external_data=False), key)
    return results
