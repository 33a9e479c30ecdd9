"""A stage's fp32 ONNX graph → ``<stage>.int8.onnx`` for ONNX Runtime's CPU provider, with ONNX
Runtime's own weight quantizer (``onnxruntime.quantization.matmul_nbits_quantizer``, 8 bits).

What int8 means here (``SETTINGS``, part of the graph's cache key):
- the weights of every MatMul whose second input is a constant become int8 ``MatMulNBits``
  weights: symmetric, one scale per block of 128 input rows of each output column (a block's
  scale follows that block's own range, so one large weight does not coarsen a whole column);
- ``accuracy_level`` 4: the kernel quantizes the activation entering the MatMul to int8 at run
  time, per block as well, and accumulates the int8 products in int32 (AVX512-VNNI here); no
  calibration set, so nothing depends on the data the gate happens to draw;
- every other op (norms, softmax, attention over the KV cache, activations, convolutions) still
  computes in fp32, and the graph's inputs and outputs keep their fp32 dtypes
  (``TensorSpec.dtype_at``): the runtime's buffers and the KV cache are the fp32 graph's;
- Gemm nodes with a constant weight (GPT-2's ``Conv1D`` exports as ``Gemm``) are first rewritten
  as MatMul (+ Add for a bias), because the quantizer takes MatMul only; the MatMul keeps the
  Gemm's node name, so an exclusion list written against the fp32 graph still names it;
- Conv stays fp32: ONNX Runtime's ``ConvInteger`` (the only int8 convolution its quantizer makes
  for the CPU) ran 2.2-3.6× slower than the fp32 Conv at BigVGAN's sizes (README, int8 section).

Why MatMulNBits and not ``quantize_dynamic`` (MatMulInteger, per-channel weights, per-tensor uint8
activations): on the full-size GPT decode step (2 threads, a loaded machine, steps of the graphs
alternated) the two were equally fast within the noise (each faster in some runs; both 1.9-2.7× the
fp32 step), MatMulNBits 1 dB more accurate (29.9 vs 28.8 dB logits SNR) and quicker to make (43 vs
71 s, 5.4 vs 5.8 GB peak: it quantizes the loaded model, no second copy on disk). With
``accuracy_level`` 0 (fp32 compute on dequantized weights) it was 12× slower than fp32. Figures:
README, int8 section.

``exclude`` (ONNX node names of the fp32 graph) plays the role of fp16's fp32 islands: those
MatMuls keep fp32 weights.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .mixed_precision import _meta, _save

QUANTIZED_OPS = ("MatMul",)
SETTINGS = {"tool": "MatMulNBitsQuantizer", "bits": 8, "block_size": 128, "symmetric": True, "accuracy_level": 4,
            "op_types": list(QUANTIZED_OPS), "gemm_as_matmul": True}
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
    io: dict = field(default_factory=dict)


def converter_name() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} quantization.MatMulNBitsQuantizer"


def _attr(n, name, default):
    a = next((a for a in n.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


def gemm_as_matmul(model: onnx.ModelProto) -> int:
    """Rewrite each Gemm whose B is an initializer (alpha 1, A not transposed) as MatMul(A, B)
    (+ Add(beta·C)); returns how many. The result is the same product, summed in the same order
    up to the kernel's blocking."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    out, done = [], 0
    for n in g.node:
        b = inits.get(n.input[1]) if n.op_type == "Gemm" and len(n.input) > 1 else None
        if b is None or _attr(n, "alpha", 1.0) != 1.0 or _attr(n, "transA", 0):
            out.append(n)
            continue
        w = n.input[1]
        if _attr(n, "transB", 0):  # a transposed copy; the original goes when nothing else reads it
            w = f"{n.input[1]}__t"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(b).T), w))
        has_c = len(n.input) > 2 and n.input[2]
        mm_out = f"{n.output[0]}__mm" if has_c else n.output[0]
        out.append(helper.make_node("MatMul", [n.input[0], w], [mm_out], name=n.name))
        if has_c:
            c = n.input[2]
            beta = _attr(n, "beta", 1.0)
            if beta != 1.0:
                if c not in inits:
                    raise Int8Error(f"{n.name}: Gemm with beta {beta} on a computed bias")
                c = f"{c}__beta"
                g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[n.input[2]]) * beta, c))
            out.append(helper.make_node("Add", [mm_out, c], [n.output[0]], name=f"{n.name}__bias"))
        for p in n.metadata_props:  # the module path (name_scopes): island lists are written against it
            out[-1 - bool(has_c)].metadata_props.add(key=p.key, value=p.value)
        done += 1
    del g.node[:]
    g.node.extend(out)
    used = {x for n in g.node for x in n.input}
    keep = [i for i in g.initializer if i.name in used or i.name in {v.name for v in g.output}]
    del g.initializer[:]
    g.initializer.extend(keep)
    return done


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """The MatMul nodes whose B is a constant: what the quantizer can make int8."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.input[1] in inits]


def _io(model: onnx.ModelProto) -> dict[str, int]:
    g = model.graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.output)}


def convert_int8(fp32_path: str | Path, out_path: str | Path, exclude=()) -> Int8Conversion:
    """Write the int8 graph of ``fp32_path`` to ``out_path``: every weight MatMul int8 except the
    nodes named in ``exclude`` (names of the fp32 graph); the graph's I/O exactly the fp32 graph's."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    t0 = time.perf_counter()
    model = onnx.load(str(fp32_path))
    names = {n.name for n in model.graph.node}
    unknown = sorted(set(exclude) - names)
    if unknown:
        raise Int8Error(f"{fp32_path.name}: excluded node(s) not in the graph: {', '.join(unknown[:5])}")
    io = _io(model)
    gemm_as_matmul(model)
    targets = weight_matmuls(model)
    excluded = sorted(set(targets) & set(exclude))
    with _root_quiet():
        q = MatMulNBitsQuantizer(model, bits=SETTINGS["bits"], block_size=SETTINGS["block_size"],
                                 is_symmetric=SETTINGS["symmetric"], accuracy_level=SETTINGS["accuracy_level"],
                                 nodes_to_exclude=excluded, op_types_to_quantize=tuple(QUANTIZED_OPS))
        q.process()
    out = q.model.model
    del q, model
    if _io(out) != io:
        raise Int8Error(f"{fp32_path.name}: the quantizer changed the graph's inputs/outputs")
    n_int = sum(n.op_type == "MatMulNBits" for n in out.graph.node)
    if n_int != len(targets) - len(excluded):
        raise Int8Error(f"{fp32_path.name}: {n_int} MatMulNBits nodes, expected {len(targets) - len(excluded)} "
                        f"({len(targets)} weight MatMuls, {len(excluded)} excluded)")
    _meta(out, {"indextts.precision": "int8", "indextts.int8_excluded": str(len(excluded)),
                "indextts.converter": converter_name()})
    _save(out, out_path)
    return Int8Conversion(out_path, time.perf_counter() - t0, n_int, len(excluded),
                          {k: onnx.TensorProto.DataType.Name(v) for k, v in io.items()})


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


__all__ = ["convert_int8", "Int8Conversion", "Int8Error", "SETTINGS", "QUANTIZED_OPS", "converter_name",
           "gemm_as_matmul", "weight_matmuls", "has_int8_ops", "INT8_OPS"]


# --- the gate's side (precision_graphs): which stages, which exclusion lists ----------------------

# the order the candidate groups (precision.CANDIDATES) are excluded in, one more per trial: the
# output heads first (they set the logits and features directly), then the embeddings, attention's
# projections and the perceiver; norms and activations hold no weight MatMul and add no trial
GROUP_ORDER = ("heads", "embeddings", "attention", "perceiver", "norms", "activations")


def quantizable_nodes(fp32_path: str | Path) -> list[str]:
    """Node names of the fp32 graph the converter makes int8: weight MatMuls, and the Gemms it
    rewrites as MatMul."""
    m = onnx.load(str(fp32_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [n.name for n in m.graph.node if len(n.input) > 1 and n.input[1] in inits and
            (n.op_type == "MatMul" or (n.op_type == "Gemm" and _attr(n, "alpha", 1.0) == 1.0
                                       and not _attr(n, "transA", 0)))]


def skip_reason(spec, fp32_path: str | Path) -> str:
    """Why a stage keeps its fp32 graph without a trial ('' when it is quantized)."""
    lacking = [t.name for t in spec.outputs if "int8" not in spec.tolerances.get(t.name, {})]
    if lacking:
        return f"not quantized: its spec states no int8 tolerance ({', '.join(lacking)})"
    if not quantizable_nodes(fp32_path):
        return "not quantized: the graph has no MatMul with constant weights"
    return ""


def trials(module, fp32_path: str | Path) -> list[tuple[str, list[str], list[str]]]:
    """(name, module paths, excluded node names) to try: nothing excluded, then the candidate
    groups added one at a time; a group that excludes no further weight MatMul is no new trial."""
    from .precision import CANDIDATES, leaf_modules
    from .trt_plan import island_nodes

    qable = set(quantizable_nodes(fp32_path))
    leaves = leaf_modules(module)
    preds = dict(CANDIDATES)
    out, paths, seen = [("none", [], [])], set(), {()}
    for g in GROUP_ORDER:
        paths |= {p for p, m in leaves.items() if preds[g](p, m)}
        nodes = sorted(set(island_nodes(fp32_path, sorted(paths))) & qable)
        if tuple(nodes) not in seen:
            seen.add(tuple(nodes))
            out.append(("+" + g if len(out) > 1 else g, sorted(paths), nodes))
    return out
