"""TensorRT readiness: every node of every graph against the TensorRT 10 ONNX parser's operator
matrix (``data/trt_onnx_ops.json``, with its source), plus the restrictions that matter for our
graphs and the tensor types each operator takes. Pure ONNX inspection: no TensorRT needed.
"""

from __future__ import annotations

import json
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


def _value_types(model: onnx.ModelProto) -> dict[str, str]:
    inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=False)
    g = inferred.graph
    types = {}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        t = v.type.tensor_type.elem_type
        if t:
            types[v.name] = _TYPE_NAMES.get(t, onnx.TensorProto.DataType.Name(t))
    for init in g.initializer:
        types[init.name] = _TYPE_NAMES.get(init.data_type, onnx.TensorProto.DataType.Name(init.data_type))
    return types


def _attr(node: onnx.NodeProto, name: str):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None


def check_model(model: onnx.ModelProto, stage: str) -> list[Finding]:
    table = trt_table()
    ops = table["operators"]
    lo, hi = table["opset_range"]
    out: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not lo <= opset <= hi:
        out.append(Finding(stage, "<model>", "opset", f"opset {opset} outside TensorRT's {lo}..{hi}",
                           f"export with opset {hi}"))
    types = _value_types(model)
    inits = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        name = node.name or node.output[0]
        if node.domain not in ("", "ai.onnx"):
            out.append(Finding(stage, name, node.op_type, f"custom domain {node.domain!r}", WORKAROUNDS["domain"]))
            continue
        info = ops.get(node.op_type)
        if info is None or not info["supported"]:
            out.append(Finding(stage, name, node.op_type, "operator not supported by the TensorRT ONNX parser",
                               WORKAROUNDS.get(node.op_type, "rewrite with supported operators")))
            continue
        allowed = set(info["types"])
        for tensor in list(node.input) + list(node.output):
            t = types.get(tensor)
            if tensor in node.output and t != "DOUBLE":
                continue  # the matrix lists input types (comparisons output BOOL, Shape INT64, ...)
            if t == "DOUBLE":
                out.append(Finding(stage, name, node.op_type, f"float64 tensor {tensor}", WORKAROUNDS["DOUBLE"]))
            elif t and allowed and t not in allowed and node.op_type not in ("Shape", "Cast", "Constant"):
                # shape/index operands (e.g. Gather indices, Slice starts) are not in the per-op type list
                if t in ("INT64", "INT32") and node.op_type in _INDEX_OPERAND_OPS:
                    continue
                out.append(Finding(stage, name, node.op_type, f"{t} tensor {tensor} (parser takes {sorted(allowed)})",
                                   "cast to a supported type around this op"))
        if node.op_type in ("AveragePool", "MaxPool") and len(_attr(node, "kernel_shape") or []) not in (2, 3):
            out.append(Finding(stage, name, node.op_type, "1-D pooling (TensorRT pools 2-D or 3-D only)",
                               WORKAROUNDS["AveragePool"]))
        if node.op_type in ("ScatterND", "ScatterElements") and (_attr(node, "reduction") or b"none") not in (b"none", "none"):
            out.append(Finding(stage, name, node.op_type, "scatter with a reduction", "use a plain scatter"))
        if node.op_type == "Pad" and len(node.input) > 3 and node.input[3] and node.input[3] not in inits:
            out.append(Finding(stage, name, node.op_type, "Pad axes is not an initializer",
                               "pad all axes with constant pads"))
    return out


_INDEX_OPERAND_OPS = {"Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Slice", "Reshape",
                      "Expand", "Tile", "Pad", "Unsqueeze", "Squeeze", "ReduceMean", "ReduceSum", "ReduceMax",
                      "Resize", "TopK", "Split", "ConstantOfShape", "Range", "OneHot", "CumSum", "Trilu"}


def check_engine_dir(engine_dir: str | Path) -> dict[str, list[Finding]]:
    from indextts_trt.runtime.manifest import load_manifest

    engine_dir = Path(engine_dir)
    manifest = load_manifest(engine_dir)
    results = {}
    for name, st in manifest["stages"].items():
        model = onnx.load(str(engine_dir / st["onnx"]), load_external_data=False)
        results[name] = check_model(model, name)
    return results
