"""A stage's fp32 ONNX graph → ``<stage>.int8.onnx`` for ONNX Runtime's CPU provider, with ONNX
Runtime's own quantization tools.

What int8 means here (``SETTINGS``, part of the graph's cache key):
- every MatMul whose second input is a constant gets int8 weights; every other op (norms, softmax,
  attention over the KV cache, activations, depthwise and 2-D convolutions) still computes in fp32,
  and the graph's inputs and outputs keep their fp32 dtypes (``TensorSpec.dtype_at``): the
  runtime's buffers and the KV cache are the fp32 graph's;
- three schemes, tried in this order by the gate (``trials``; which passing graph is kept: int8_pick.py):
  ``dynamic`` (``quantize_dynamic``: ``MatMulInteger`` with int8 weights, one symmetric scale per
  output column, and uint8 activations quantized per tensor at run time: no calibration set, so
  nothing depends on the data the gate happens to draw), ``rows`` (the same weights and kernel,
  activations quantized per row, i.e. per token: ``_rows``), then ``blocks`` (``MatMulNBits`` 8
  bits, one scale per block of 128 input rows of each column, activations quantized per block:
  ``accuracy_level`` 4); then all three again with the rewritten convolutions left fp32, then with
  candidate groups left fp32 as well, one more group per level;
- Gemm nodes with a constant weight (GPT-2's ``Conv1D`` exports as ``Gemm``) are first rewritten
  as MatMul (+ Add for a bias), and 1-D convolutions over channels (group 1, stride 1: the DiT's
  WaveNet and 1×1 projections, the conformers' pointwise convolutions) as Transpose → Pad → k
  shifted Slices → Concat → MatMul (the same sum of products, as one matrix product with k·C
  inputs), because the quantizers take MatMul only; the MatMul keeps the node's name, so an
  exclusion list written against the fp32 graph still names it.

Why ``dynamic`` first (README, int8 section; 2 threads, Intel Xeon with AMX and AVX512-VNNI): the
int8×int8 product runs on the matrix units, and on the DiT's sizes ((2,600,512)×(512,1536)) it took
0.73 ms against MatMulNBits' 4.5 ms and fp32's 7.6 ms; on the GPT decode step (1-3 rows, bound by
the weights' bytes, which are int8 in both) the two were within 3-9 % (dynamic ahead) and
MatMulNBits 0.5-1 dB more accurate (29.5-30.0 vs 28.8-29.5 dB logits SNR). ``rows`` next: at
(200,1280)×(1280,3840) with 32 rows 20× the others, 1.0 ms and 38.8 dB against ``dynamic``'s 0.65 ms
and 31.3 dB (13.6 dB on the ordinary rows) and fp32's 5.9 ms. ``blocks`` stays as the most accurate
fallback before any weight is left fp32. ConvInteger (the quantizer's own int8
convolution) ran 2.2-3.6× slower than the fp32 Conv at BigVGAN's sizes, hence the rewrite as
MatMul, not ConvInteger.

``exclude`` (ONNX node names of the fp32 graph) plays the role of fp16's fp32 islands: those
MatMuls keep fp32 weights.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .mixed_precision import _meta, _save

QUANTIZED_OPS = ("MatMul",)
# the weights' int8 levels: [-64, 64], not [-127, 127]. On x86 without VNNI (AVX2 only: this
# project's CI machine, an AMD EPYC) ONNX Runtime's u8 × s8 kernel adds pairs of products in int16
# (vpmaddubsw), which saturates unless 2·255·|w| ≤ 32767: measured there, MatMulInteger with full-range
# weights was wrong by up to 4·10⁶ on random inputs and exact with |w| ≤ 64 (and the tiny build's
# `dynamic` graphs failed the gate at 6-19 dB). With VNNI or AMX the sums are int32 either way, so
# the reduced range makes the integer results the same on every x86 CPU: a verdict reached on one
# holds on the others. It is quantize_dynamic's ``reduce_range``.
W_LEVELS = 64
SCHEMES = {
    "dynamic": {"tool": "quantize_dynamic", "weights": f"int8 in [-{W_LEVELS}, {W_LEVELS}] (reduce_range), per output column, symmetric",
                "activations": "uint8, per tensor, at run time", "op": "MatMulInteger"},
    "rows": {"tool": "indextts-trt ONNX rewrite (_rows)",
             "weights": f"int8 in [-{W_LEVELS}, {W_LEVELS}], per output column, symmetric",
             "activations": "int8 per row (token), symmetric, at run time; fed as uint8 + 128", "op": "MatMulInteger"},
    "blocks": {"tool": "MatMulNBitsQuantizer", "bits": 8, "block_size": 128, "symmetric": True, "accuracy_level": 4,
               "op": "MatMulNBits"},
}
SETTINGS = {"schemes": SCHEMES, "order": ["dynamic", "rows", "blocks"], "op_types": list(QUANTIZED_OPS),
            "gemm_as_matmul": True, "conv1d_as_matmul": True}
INT8_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "MatMulNBits", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "ConvInteger"}  # ops only a quantized graph has


class Int8Error(ValueError):
    pass


@dataclass
class Int8Conversion:
    path: Path
    seconds: float
    quantized: int  # weight MatMuls now int8
    kept_fp32: int  # weight MatMuls left fp32 (excluded)
    scheme: str = "dynamic"
    io: dict = field(default_factory=dict)


def converter_name() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} quantization (quantize_dynamic, MatMulNBitsQuantizer) + _rows"


def _attr(n, name, default):
    a = next((a for a in n.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


def _gemm_rewritable(n, inits) -> bool:
    return (n.op_type == "Gemm" and len(n.input) > 1 and n.input[1] in inits and _attr(n, "alpha", 1.0) == 1.0
            and not _attr(n, "transA", 0))


def _conv1d_rewritable(n, inits) -> bool:
    w = inits.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
    return (w is not None and len(w.dims) == 3 and _attr(n, "group", 1) == 1
            and list(_attr(n, "strides", [1])) == [1]
            and _attr(n, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and (len(n.input) < 3 or not n.input[2] or n.input[2] in inits))


def _copy_meta(src, dst) -> None:
    for p in src.metadata_props:  # the module path (name_scopes): island lists are written against it
        dst.metadata_props.add(key=p.key, value=p.value)


def _drop_unused(g) -> None:
    used = {x for n in g.node for x in n.input} | {v.name for v in g.output}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def gemm_as_matmul(model: onnx.ModelProto) -> int:
    """Rewrite each Gemm whose B is an initializer (alpha 1, A not transposed) as MatMul(A, B)
    (+ Add(beta·C)); returns how many. The result is the same product, summed in the same order
    up to the kernel's blocking."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    out, done = [], 0
    for n in g.node:
        if not _gemm_rewritable(n, inits):
            out.append(n)
            continue
        b, w = inits[n.input[1]], n.input[1]
        if _attr(n, "transB", 0):  # a transposed copy; the original goes when nothing else reads it
            w = f"{n.input[1]}__t"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(b).T), w))
        has_c = len(n.input) > 2 and n.input[2]
        mm_out = f"{n.output[0]}__mm" if has_c else n.output[0]
        out.append(helper.make_node("MatMul", [n.input[0], w], [mm_out], name=n.name))
        _copy_meta(n, out[-1])
        if has_c:
            c = n.input[2]
            beta = _attr(n, "beta", 1.0)
            if beta != 1.0:
                if c not in inits:
                    raise Int8Error(f"{n.name}: Gemm with beta {beta} on a computed bias")
                c = f"{c}__beta"
                g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[n.input[2]]) * beta, c))
            out.append(helper.make_node("Add", [mm_out, c], [n.output[0]], name=f"{n.name}__bias"))
        done += 1
    del g.node[:]
    g.node.extend(out)
    _drop_unused(g)
    return done


def conv1d_as_matmul(model: onnx.ModelProto) -> int:
    """Rewrite each 1-D Conv with a constant weight (O, C, k), group 1 and stride 1 as a MatMul over
    the time axis; returns how many. y[b,o,t] = Σ_j Σ_c W[o,c,j]·x_pad[b,c,t+j·d] is the product of
    the k shifted copies of x_pad (concatenated on the channel axis: k·C inputs per frame) with W
    laid out as W'[j·C+c, o]: the same products and sum, in another order."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    out, done = [], 0

    def const(name, value):
        g.initializer.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    for n in g.node:
        if not _conv1d_rewritable(n, inits):
            out.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        o_ch, c_in, k = w.shape
        d = int(_attr(n, "dilations", [1])[0])
        pl, pr = (list(_attr(n, "pads", [0, 0])) + [0, 0])[:2]
        p, x = f"{n.name}__c1d", n.input[0]
        steps = [helper.make_node("Transpose", [x], [f"{p}_xt"], name=f"{p}_xt", perm=[0, 2, 1])]
        x = f"{p}_xt"
        if pl or pr:
            steps.append(helper.make_node("Pad", [x, const(f"{p}_pads", [0, pl, 0, 0, pr, 0])], [f"{p}_pad"],
                                          name=f"{p}_pad"))
            x = f"{p}_pad"
        if k > 1:
            shifted = []
            for j in range(k):  # frames t+j·d for t in [0, T_out): from j·d to (k-1-j)·d before the end
                tail = (k - 1 - j) * d
                steps.append(helper.make_node(
                    "Slice", [x, const(f"{p}_s{j}", [j * d]), const(f"{p}_e{j}", [-tail if tail else 2**62]),
                              const(f"{p}_ax", [1]) if j == 0 else f"{p}_ax"], [f"{p}_sl{j}"], name=f"{p}_sl{j}"))
                shifted.append(f"{p}_sl{j}")
            steps.append(helper.make_node("Concat", shifted, [f"{p}_cols"], name=f"{p}_cols", axis=2))
            x = f"{p}_cols"
        wm = f"{n.input[1]}__c1d"
        g.initializer.append(numpy_helper.from_array(
            np.ascontiguousarray(w.transpose(2, 1, 0).reshape(k * c_in, o_ch)), wm))
        steps.append(helper.make_node("MatMul", [x, wm], [f"{p}_mm"], name=n.name))
        _copy_meta(n, steps[-1])
        y = f"{p}_mm"
        if len(n.input) > 2 and n.input[2]:
            steps.append(helper.make_node("Add", [y, n.input[2]], [f"{p}_b"], name=f"{p}_bias"))
            y = f"{p}_b"
        steps.append(helper.make_node("Transpose", [y], [n.output[0]], name=f"{p}_yt", perm=[0, 2, 1]))
        out.extend(steps)
        done += 1
    del g.node[:]
    g.node.extend(out)
    _drop_unused(g)
    return done


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """The MatMul nodes whose B is a constant: what the quantizer can make int8."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.input[1] in inits]


def _io(model: onnx.ModelProto) -> dict[str, int]:
    g = model.graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.output)}


def as_matmuls(model: onnx.ModelProto) -> None:
    """Both rewrites: every Gemm and 1-D Conv the quantizers should see becomes a MatMul."""
    gemm_as_matmul(model)
    conv1d_as_matmul(model)


def convert_int8(fp32_path: str | Path, out_path: str | Path, exclude=(), scheme: str = "dynamic") -> Int8Conversion:
    """Write the int8 graph of ``fp32_path`` to ``out_path`` with ``scheme`` (``SCHEMES``): every
    weight MatMul int8 except the nodes named in ``exclude`` (names of the fp32 graph); the graph's
    I/O exactly the fp32 graph's."""
    if scheme not in SCHEMES:
        raise Int8Error(f"unknown int8 scheme {scheme!r} (one of {', '.join(SCHEMES)})")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    t0 = time.perf_counter()
    model = onnx.load(str(fp32_path))
    names = {n.name for n in model.graph.node}
    unknown = sorted(set(exclude) - names)
    if unknown:
        raise Int8Error(f"{fp32_path.name}: excluded node(s) not in the graph: {', '.join(unknown[:5])}")
    io = _io(model)
    as_matmuls(model)
    targets = weight_matmuls(model)
    excluded = sorted(set(targets) & set(exclude))
    with _root_quiet():
        keep = set(excluded)
        out = {"dynamic": _dynamic, "rows": _rows, "blocks": _blocks}[scheme](
            model, [t for t in targets if t not in keep], excluded, out_path.parent)
    del model
    if _io(out) != io:
        raise Int8Error(f"{fp32_path.name}: the quantizer changed the graph's inputs/outputs")
    op = SCHEMES[scheme]["op"]
    n_int = sum(n.op_type == op for n in out.graph.node)
    if n_int != len(targets) - len(excluded):
        raise Int8Error(f"{fp32_path.name}: {n_int} {op} nodes, expected {len(targets) - len(excluded)} "
                        f"({len(targets)} weight MatMuls, {len(excluded)} excluded)")
    _meta(out, {"indextts.precision": "int8", "indextts.int8_scheme": scheme,
                "indextts.int8_excluded": str(len(excluded)), "indextts.converter": converter_name()})
    _save(out, out_path)
    return Int8Conversion(out_path, time.perf_counter() - t0, n_int, len(excluded), scheme,
                          {k: onnx.TensorProto.DataType.Name(v) for k, v in io.items()})


def _blocks(model, nodes, excluded, scratch: Path) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    s = SCHEMES["blocks"]
    q = MatMulNBitsQuantizer(model, bits=s["bits"], block_size=s["block_size"], is_symmetric=s["symmetric"],
                             accuracy_level=s["accuracy_level"], nodes_to_exclude=excluded,
                             op_types_to_quantize=tuple(QUANTIZED_OPS))
    q.process()
    return q.model.model


def _dynamic(model, nodes, excluded, scratch: Path) -> onnx.ModelProto:
    """quantize_dynamic writes its result to a file (and runs shape inference through one, which
    a graph over 2 GB needs): both in a scratch directory beside the output, removed after."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix=".int8-dynamic-", dir=scratch) as tmp:
        dst = Path(tmp) / "q.onnx"
        quantize_dynamic(model, dst, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_quantize=nodes,
                         nodes_to_exclude=excluded, use_external_data_format=True,
                         extra_options={"MatMulConstBOnly": True})
        return onnx.load(str(dst))  # external data read in before the directory goes


def _rows(model, nodes, excluded, scratch: Path) -> onnx.ModelProto:
    """Each MatMul of ``nodes`` as int8 × int8 with **one scale per activation row** (token):
    s = max|x| / 127 over the row, q = round(x / s) ∈ [-127, 127]; weights int8 in [-64, 64]
    (``W_LEVELS``) with one symmetric scale per output column (``quantize_dynamic``'s per-channel
    rule with its ``reduce_range``); y = (q·W_q) · s · s_w.

    Why a third scheme: ``dynamic`` shares one activation scale over the whole tensor, so a few
    large rows (the GPT prefill's conditioning latents beside its text and codes) leave the others
    a handful of levels: the full-size prefill failed the gate at 21 dB with ``dynamic`` and passed
    only with ``blocks``, whose kernel misses the matrix units (README, int8 section). With 7-bit
    weights ``rows`` gets the prefill to 23.8 dB and the decode step to 24.0 (limit 25): measured
    so far it passes no full-size stage, and the ladder goes on to ``blocks``. ONNX
    Runtime's CPU kernel for int8 × int8 MatMulInteger is a slow path here (28 ms against 1.0 ms
    at (200,1280)×(1280,3840)), so q is fed as uint8 q + 128 with the scalar zero point 128: the
    same integer products, on the u8 × s8 kernel ``dynamic`` uses."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    todo = set(nodes)

    def const(name, value, dtype):
        if name not in inits:
            inits[name] = numpy_helper.from_array(np.asarray(value, dtype), name)
            g.initializer.append(inits[name])
        return name

    const("__rows_tiny", 1e-30, np.float32)  # an all-zero row: scale 1e-30/127, q 0, y 0
    const("__rows_127", 127.0, np.float32)
    const("__rows_128", 128.0, np.float32)
    const("__rows_z", 128, np.uint8)
    out = []
    for n in g.node:
        if n.name not in todo:
            out.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        if w.ndim != 2:
            raise Int8Error(f"{n.name}: weight of shape {w.shape}, the rows scheme takes (K, N)")
        wq_name, ws_name = f"{n.input[1]}__rows_q", f"{n.input[1]}__rows_s"
        if wq_name not in inits:  # one int8 copy of a weight several MatMuls share
            ws = np.abs(w).max(axis=0) / W_LEVELS
            ws = np.where(ws > 0, ws, 1.0).astype(np.float32)
            const(wq_name, np.clip(np.rint(w / ws), -W_LEVELS, W_LEVELS), np.int8)
            const(ws_name, ws, np.float32)
        p, x = f"{n.name}__rows", n.input[0]
        if opset >= 18:
            rmax = helper.make_node("ReduceMax", [f"{p}_abs", const("__rows_axes", [-1], np.int64)], [f"{p}_max"],
                                    name=f"{p}_max", keepdims=1)
        else:
            rmax = helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_max"], name=f"{p}_max", axes=[-1], keepdims=1)
        steps = [
            helper.make_node("Abs", [x], [f"{p}_abs"], name=f"{p}_abs"), rmax,
            helper.make_node("Max", [f"{p}_max", "__rows_tiny"], [f"{p}_mx"], name=f"{p}_mx"),
            helper.make_node("Div", [f"{p}_mx", "__rows_127"], [f"{p}_s"], name=f"{p}_s"),  # (..., M, 1)
            helper.make_node("Div", [x, f"{p}_s"], [f"{p}_xd"], name=f"{p}_xd"),
            helper.make_node("Round", [f"{p}_xd"], [f"{p}_xr"], name=f"{p}_xr"),  # half to even, in [-127, 127]
            helper.make_node("Add", [f"{p}_xr", "__rows_128"], [f"{p}_xu"], name=f"{p}_xu"),
            helper.make_node("Cast", [f"{p}_xu"], [f"{p}_q"], name=f"{p}_q", to=onnx.TensorProto.UINT8),
            helper.make_node("MatMulInteger", [f"{p}_q", wq_name, "__rows_z"], [f"{p}_yi"], name=n.name),
            helper.make_node("Cast", [f"{p}_yi"], [f"{p}_yf"], name=f"{p}_yf", to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", [f"{p}_yf", f"{p}_s"], [f"{p}_ys"], name=f"{p}_ys"),
            helper.make_node("Mul", [f"{p}_ys", ws_name], [n.output[0]], name=f"{p}_y"),
        ]
        _copy_meta(n, steps[8])
        out.extend(steps)
    del g.node[:]
    g.node.extend(out)
    _drop_unused(g)
    return model


@contextmanager
def _root_quiet():
    """The quantizer logs on the root logger (a pre-processing hint on every call, each node at
    INFO): quiet below ERROR while it runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def has_int8_ops(path: str | Path) -> bool:
    m = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in INT8_OPS for n in m.graph.node)


__all__ = ["convert_int8", "Int8Conversion", "Int8Error", "SETTINGS", "SCHEMES", "QUANTIZED_OPS", "converter_name",
           "gemm_as_matmul", "conv1d_as_matmul", "as_matmuls", "weight_matmuls", "has_int8_ops", "INT8_OPS"]


# --- the gate's side (precision_graphs): which stages, which exclusion lists ----------------------

# the order the candidate groups are excluded in, one more per level: first the convolutions
# rewritten as MatMul (``conv1d_as_matmul``: their int8 error is what the rewrite adds; measured at
# full size, w2v-bert's pointwise convolutions in int8 cost it 10 dB at the short point), then the
# fp16 trials' groups (precision.CANDIDATES): the output heads (they set the logits and features
# directly), the embeddings, attention's projections and the perceiver; norms and activations hold
# no weight MatMul and add no level
GROUP_ORDER = ("convolutions", "heads", "embeddings", "attention", "perceiver", "norms", "activations")


def _weight_nodes(fp32_path: str | Path) -> dict[str, str]:
    """{node name: fp32 op type} of what the converter makes int8: weight MatMuls, and the Gemms
    and 1-D Convs it rewrites as MatMul (the rewritten MatMul keeps the name)."""
    m = onnx.load(str(fp32_path), load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}
    return {n.name: n.op_type for n in m.graph.node if len(n.input) > 1 and n.input[1] in inits and
            (n.op_type == "MatMul" or _gemm_rewritable(n, inits) or _conv1d_rewritable(n, inits))}


def quantizable_nodes(fp32_path: str | Path) -> list[str]:
    """Node names of the fp32 graph the converter makes int8 (``_weight_nodes``), in graph order."""
    return list(_weight_nodes(fp32_path))


def skip_reason(spec, fp32_path: str | Path) -> str:
    """Why a stage keeps its fp32 graph without a trial ('' when it is quantized)."""
    lacking = [t.name for t in spec.outputs if "int8" not in spec.tolerances.get(t.name, {})]
    if lacking:
        return f"not quantized: its spec states no int8 tolerance ({', '.join(lacking)})"
    if not quantizable_nodes(fp32_path):
        return "not quantized: the graph has no MatMul with constant weights"
    return ""


def trials(module, fp32_path: str | Path) -> list[tuple[str, str, list[str], list[str]]]:
    """(name, scheme, module paths, excluded node names) to try: nothing excluded, then the groups
    of ``GROUP_ORDER`` added one at a time, each level with every scheme of ``SETTINGS["order"]``
    (the fastest first); a group that excludes no further weight MatMul is no new level."""
    from torch import nn

    from .precision import CANDIDATES, leaf_modules
    from .trt_plan import island_nodes

    weights = _weight_nodes(fp32_path)
    qable = set(weights)
    convs = {n for n, op in weights.items() if op == "Conv"}
    leaves = leaf_modules(module)
    preds = {**dict(CANDIDATES), "convolutions": lambda p, mod: isinstance(mod, nn.Conv1d)}
    levels, paths, nodes, seen = [("", [], [])], set(), set(), {()}
    for g in GROUP_ORDER:
        paths |= {p for p, mod in leaves.items() if preds[g](p, mod)}
        nodes |= convs if g == "convolutions" else set()  # by op, whatever the module paths say
        nodes |= set(island_nodes(fp32_path, sorted(paths))) & qable
        if tuple(sorted(nodes)) not in seen:
            seen.add(tuple(sorted(nodes)))
            levels.append((g if len(levels) == 1 else "+" + g, sorted(paths), sorted(nodes)))
    return [(f"{s}, {lv}" if lv else s, s, p, n) for lv, p, n in levels for s in SETTINGS["order"]]
