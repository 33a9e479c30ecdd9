"""A stage's fp32 ONNX graph → ``<stage>.fp16.onnx`` / ``<stage>.bf16.onnx``: the precision lives in
the graph (TensorRT 11 builds every network strongly typed; 10.x with STRONGLY_TYPED), so the
graph ONNX Runtime gates on the CPU is the graph TensorRT builds.

The conversion is NVIDIA ModelOpt's AutoCast (``modelopt.onnx.autocast``): every float node goes
to the low precision except the fp32 islands (ONNX node names, from ``trt_plan.island_nodes``),
with Casts at the island boundaries. Around it, our own passes:

- the graph's I/O dtypes follow a per-tensor policy (``io_policy``): float I/O stays fp32 where the
  runtime needs it, the KV cache is carried in the low precision (half the bytes per decode step;
  the decode step reads it and writes only the new position's ``kv_new``);
  integer I/O (codes, ids, lengths) is never touched;
- Cast pairs that round-trip exactly (fp16 → fp32 → fp16) are removed;
- ModelOpt's inferred intermediate shapes are dropped (it writes one symbolic name, ``unk``, for
  unrelated unknown dims, which makes ONNX Runtime reject dit_step's buffers); types are kept;
- the result is checked: islands fp32, every other float node low precision (or listed in the
  report), I/O as the policy says.

ONNX Runtime's CPU provider has no bf16 kernels for MatMul, Add, Mul, Softmax, Conv, ... (measured,
1.32): a bf16 graph is written and type-checked here but cannot be run on the CPU.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from indextts_trt.runtime.spec import StageSpec

LOW = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}
_NP = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
       "int64": TensorProto.INT64, "int32": TensorProto.INT32, "bool": TensorProto.BOOL}
_NAME = {v: k for k, v in _NP.items()}
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's 2 GiB limit, with room for the graph itself
# ops with no float compute of their own: their dtype follows their inputs wherever they sit
_TYPE_FOLLOWERS = {"Cast", "Shape", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather",
                   "Split", "Expand", "Identity", "Constant", "ConstantOfShape", "Where", "ScatterND", "Range",
                   "Equal", "Less", "Greater", "Not", "And", "Or", "Trilu", "Tile", "Pad", "ArgMax", "Size"}


class ConversionError(ValueError):
    pass


@dataclass
class Conversion:
    path: Path
    precision: str
    seconds: float
    casts: int  # Cast nodes in the converted graph
    kept_fp32: list[str]  # the islands asked for
    also_fp32: list[str] = field(default_factory=list)  # compute nodes left fp32 that were not asked for
    io: dict = field(default_factory=dict)  # graph input/output -> dtype


def io_policy(spec: StageSpec, precision: str) -> dict[str, str]:
    """Each graph I/O tensor's dtype in the ``precision`` graph, as the spec states it
    (``TensorSpec.dtype_at``): the KV cache in the low precision, other float I/O fp32, integers
    unchanged."""
    return {t.name: t.dtype_at(precision) for t in spec.inputs + spec.outputs}


def _modelopt_convert(fp32_path: Path, precision: str, keep: set[str]) -> onnx.ModelProto:
    """ModelOpt AutoCast with our islands; an operator the TensorRT parser takes only in fp32
    (e.g. Mish has no bf16) stays fp32 as well (by type: ModelOpt names unnamed nodes itself)."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
        from modelopt.onnx.autocast.nodeclassifier import NodeRuleBase
    except ImportError as e:
        raise ConversionError(f"mixed precision needs NVIDIA ModelOpt (pip install 'indextts-trt[reference]'): {e}") \
            from None
    logging.getLogger("autocast").setLevel(logging.WARNING)
    logging.getLogger("modelopt").setLevel(logging.WARNING)

    class _Islands(NodeRuleBase):  # exact names (its nodes_to_exclude takes regexes, one match per pattern)
        def _check_inner(self, node):
            return node.name in keep

        def _log_skipped(self, node, **kwargs):
            pass

    # data_max=inf: no reference run on random data deciding islands (we decide them by parity);
    # init_max stays at fp16's max for fp16 (a weight fp16 cannot hold keeps its node fp32)
    return convert_to_mixed_precision(
        str(fp32_path), low_precision_type=precision, keep_io_types=True, custom_rule=_Islands(),
        op_types_to_exclude=sorted(_parser_lacks(precision)),
        data_max=np.inf, init_max=float(np.finfo(np.float16).max) if precision == "fp16" else np.inf)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    g = model.graph
    t = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    t.update({i.name: i.data_type for i in g.initializer})
    for n in g.node:
        if n.op_type == "Cast":
            t[n.output[0]] = next(a.i for a in n.attribute if a.name == "to")
    return t


def _apply_io(model: onnx.ModelProto, want: dict[str, int], types: dict[str, int]) -> None:
    """Retype graph I/O per ``want`` with a Cast at the boundary (folded away later where it
    meets ModelOpt's own boundary Cast)."""
    g = model.graph
    for vi in g.input:
        have, w = vi.type.tensor_type.elem_type, want.get(vi.name)
        if w is None or w == have:
            continue
        if have not in FLOATS or w not in FLOATS:
            raise ConversionError(f"input {vi.name}: cannot carry a {_NAME.get(have, have)} tensor as {_NAME.get(w, w)}")
        inner = f"{vi.name}__as_{_NAME[have]}"
        for n in g.node:
            for i, x in enumerate(n.input):
                if x == vi.name:
                    n.input[i] = inner
        g.node.insert(0, helper.make_node("Cast", [vi.name], [inner], to=have, name=f"{inner}__cast"))
        g.value_info.append(helper.make_tensor_value_info(inner, have, None))
        vi.type.tensor_type.elem_type = types[vi.name] = w
        types[inner] = have
    for vo in g.output:
        have, w = vo.type.tensor_type.elem_type, want.get(vo.name)
        if w is None or w == have:
            continue
        if have not in FLOATS or w not in FLOATS:
            raise ConversionError(f"output {vo.name}: cannot carry a {_NAME.get(have, have)} tensor as {_NAME.get(w, w)}")
        inner = f"{vo.name}__as_{_NAME[have]}"
        for n in g.node:
            for i, x in enumerate(n.output):
                if x == vo.name:
                    n.output[i] = inner
            for i, x in enumerate(n.input):  # a graph output read inside the graph too
                if x == vo.name:
                    n.input[i] = inner
        g.node.append(helper.make_node("Cast", [inner], [vo.name], to=w, name=f"{inner}__cast"))
        g.value_info.append(helper.make_tensor_value_info(inner, have, None))
        vo.type.tensor_type.elem_type = types[vo.name] = w
        types[inner] = have


_WIDER = {TensorProto.FLOAT16: {TensorProto.FLOAT}, TensorProto.BFLOAT16: {TensorProto.FLOAT}}


def _fold_casts(model: onnx.ModelProto, types: dict[str, int]) -> int:
    """Remove Cast(to=wide) → Cast(to=narrow) pairs on a ``narrow`` tensor (exact round trips).
    Returns how many second Casts were removed."""
    g = model.graph
    fixed = {v.name for v in list(g.input) + list(g.output)} | {i.name for i in g.initializer}
    removed = 0
    while True:
        producer = {o: n for n in g.node for o in n.output}
        consumers: dict[str, list] = {}
        for n in g.node:
            for x in n.input:
                consumers.setdefault(x, []).append(n)
        hit = None
        for b in g.node:
            a = producer.get(b.input[0]) if b.op_type == "Cast" else None
            if a is None or a.op_type != "Cast":
                continue
            x, to_b = a.input[0], types.get(b.output[0])
            if types.get(x) == to_b and types.get(a.output[0]) in _WIDER.get(to_b, ()):
                hit = (a, b, x)
                break
        if hit is None:
            return removed
        a, b, x = hit
        y = b.output[0]
        outputs = {v.name for v in g.output}
        if y not in outputs:
            for n in consumers.get(y, []):
                n.input[:] = [x if i == y else i for i in n.input]
            g.node.remove(b)
        elif x not in fixed:
            # the graph output takes over the narrow tensor's name: its producer writes it directly
            for n in g.node:
                n.output[:] = [y if o == x else o for o in n.output]
                n.input[:] = [y if i == x else i for i in n.input]
            g.node.remove(b)
        else:
            b.op_type, b.input[0] = "Identity", x
            del b.attribute[:]
        if not any(a.output[0] in n.input for n in g.node) and a.output[0] not in outputs and a in g.node:
            g.node.remove(a)
        removed += 1


def _fp32_compute_nodes(model: onnx.ModelProto, types: dict[str, int]) -> set[str]:
    """Nodes with float compute whose float inputs or outputs are fp32."""
    out = set()
    for n in model.graph.node:
        if n.op_type in _TYPE_FOLLOWERS:
            continue
        ts = [types.get(x) for x in list(n.input) + list(n.output) if x]
        if any(t == TensorProto.FLOAT for t in ts):
            out.add(n.name)
    return out


def _save(model: onnx.ModelProto, out_path: Path) -> None:
    """Atomically: both files (graph, and external data when the weights pass 2 GB) appear only
    once fully written."""
    big = sum(i.ByteSize() for i in model.graph.initializer) > EXTERNAL_DATA_BYTES
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        data = f"{out_path.name}.data"
        if big:
            onnx.save(model, str(tmp / out_path.name), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=data, size_threshold=1024)
            os.replace(tmp / data, out_path.parent / data)
        else:
            onnx.save(model, str(tmp / out_path.name))
            (out_path.parent / data).unlink(missing_ok=True)  # a stale one from an earlier, larger graph
        os.replace(tmp / out_path.name, out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert(fp32_path: str | Path, out_path: str | Path, precision: str, keep_fp32_nodes=(),
            io_dtypes: dict[str, str] | None = None) -> Conversion:
    """Write the ``precision`` ("fp16" | "bf16") graph of ``fp32_path`` to ``out_path``, with the
    nodes named in ``keep_fp32_nodes`` in fp32 and graph I/O dtypes per ``io_dtypes`` (tensor ->
    "float32" | "float16" | "bfloat16" | the integer dtype it has; unlisted float I/O stays fp32)."""
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if precision not in LOW:
        raise ConversionError(f"precision {precision!r}: expected fp16 or bf16")
    keep = set(keep_fp32_nodes)
    src = onnx.load(str(fp32_path), load_external_data=False)
    unknown = sorted(keep - {n.name for n in src.graph.node})
    if unknown:
        raise ConversionError(f"{fp32_path.name}: fp32 island node(s) not in the graph: {', '.join(unknown[:5])}"
                              + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    io_names = {v.name for v in list(src.graph.input) + list(src.graph.output)}
    want = {}
    for k, v in (io_dtypes or {}).items():
        if k not in io_names:
            raise ConversionError(f"{fp32_path.name}: the I/O policy names {k!r}, which is not a graph input or output")
        if v not in _NP:
            raise ConversionError(f"{fp32_path.name}: tensor {k}: unknown dtype {v!r}")
        want[k] = _NP[v]
    t0 = time.perf_counter()
    model = _modelopt_convert(fp32_path, precision, keep)
    types = _types(model)
    for vi in model.graph.value_info:  # see the module docstring: types are right, shapes are not
        vi.type.tensor_type.ClearField("shape")
    _apply_io(model, want, types)
    _fold_casts(model, types)
    fp32 = _fp32_compute_nodes(model, types)
    lost = sorted(keep - {n.name for n in model.graph.node})
    if lost:
        raise ConversionError(f"{fp32_path.name}: ModelOpt rewrote island node(s) {', '.join(lost[:5])}; "
                              "choose the islands on the rewritten graph")
    low_islands = sorted(n for n in keep if n not in fp32 and _has_float_compute(model, n))
    if low_islands:
        raise ConversionError(f"{fp32_path.name}: island node(s) not kept fp32: {', '.join(low_islands[:5])}")
    for vi in list(model.graph.input) + list(model.graph.output):
        w = want.get(vi.name)
        if w is not None and vi.type.tensor_type.elem_type != w:
            raise ConversionError(f"{fp32_path.name}: {vi.name} is {_NAME.get(vi.type.tensor_type.elem_type)}, "
                                  f"the policy says {_NAME[w]}")
    _meta(model, {"indextts.precision": precision, "indextts.fp32_islands": str(len(keep)),
                  "indextts.converter": f"modelopt {_modelopt_version()} autocast"})
    _save(model, out_path)
    g = model.graph
    return Conversion(out_path, precision, time.perf_counter() - t0, sum(n.op_type == "Cast" for n in g.node),
                      sorted(keep), sorted(fp32 - keep - _cast_names(model)),
                      {v.name: _NAME.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))
                       for v in list(g.input) + list(g.output)})


def _parser_lacks(precision: str) -> set[str]:
    """Operators whose TensorRT parser table lists FP32 but not ``precision`` (trt_check's table)."""
    from .trt_check import trt_table

    want = {"fp16": "FP16", "bf16": "BF16"}[precision]
    return {op for op, e in trt_table()["operators"].items() if e["supported"] and "FP32" in e["types"]
            and want not in e["types"]}


def _has_float_compute(model: onnx.ModelProto, name: str) -> bool:
    n = next((n for n in model.graph.node if n.name == name), None)
    return n is not None and n.op_type not in _TYPE_FOLLOWERS


def _cast_names(model: onnx.ModelProto) -> set[str]:
    return {n.name for n in model.graph.node if n.op_type == "Cast"}


def _meta(model: onnx.ModelProto, kv: dict[str, str]) -> None:
    keep = [p for p in model.metadata_props if p.key not in kv]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in kv.items():
        model.metadata_props.add(key=k, value=v)


def _modelopt_version() -> str:
    import modelopt

    return getattr(modelopt, "__version__", "?")


def ort_runner(path: str | Path, threads: int = 2):
    """feed (float32/int64 numpy) -> outputs as float32/int64, for a graph whose float I/O may be
    fp16: inputs are cast to the graph's dtypes, fp16 outputs back to float32 for judging."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    np_of = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
    ins = {i.name: np_of[i.type] for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]

    def run(feed: dict) -> dict:
        outs = sess.run(names, {k: np.ascontiguousarray(feed[k], dtype=ins[k]) for k in ins})
        return {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in zip(names, outs)}

    return run


__all__ = ["convert", "Conversion", "ConversionError", "io_policy", "ort_runner"]
