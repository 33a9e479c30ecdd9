"""`tts-export check`: the TensorRT ONNX parser table, its restrictions, subgraphs, and the types of
the converted fp16/bf16 graphs (export/trt_check.py)."""

from __future__ import annotations

import shutil

import onnx
import pytest
from onnx import TensorProto, helper

from indextts_trt.export.trt_check import RESTRICTION_CHECKS, check_engine_dir, check_model, trt_table


def _model(nodes, inputs, outputs, inits=(), opset=20):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, t, shape=None):
    return helper.make_tensor_value_info(name, t, shape)


def _found(model):
    return {(f.node, f.op, f.problem) for f in check_model(model, "toy")}


def test_the_table_is_the_newest_parser_table_with_its_source():
    t = trt_table()
    assert "10.15" in t["source"] and "onnx-tensorrt" in t["source"] and t["opset_range"] == [9, 24]
    ops = t["operators"]
    assert ops["Mish"]["types"] == ["FP32", "FP16"] and "BF16" in ops["MatMul"]["types"]
    assert ops["RMSNormalization"]["supported"] and not ops["BitwiseNot"]["supported"]


def test_restrictions_in_the_table_are_applied():
    x = _vi("x", TensorProto.FLOAT, [2, 3, 4])
    ax = _vi("ax", TensorProto.INT64, [1])
    k = helper.make_tensor("k", TensorProto.INT64, [1], [2])
    nodes = [helper.make_node("ReduceMean", ["x", "ax"], ["r"], name="mean_dyn_axes"),
             helper.make_node("ReduceSum", ["x", "k"], ["s"], name="sum_const_axes"),
             helper.make_node("TopK", ["x", "k"], ["tv", "ti"], name="topk_unsorted", sorted=0),
             helper.make_node("LayerNormalization", ["x", "g", "b"], ["y", "mean", "istd"], name="ln_3_outputs"),
             helper.make_node("ScatterND", ["x", "i", "u"], ["sc"], name="scatter_add", reduction="add"),
             helper.make_node("Resize", ["x", "", "sz"], ["rz"], name="resize_cubic", mode="cubic")]
    inits = [k, helper.make_tensor("g", TensorProto.FLOAT, [4], [1] * 4), helper.make_tensor("b", TensorProto.FLOAT,
             [4], [0] * 4), helper.make_tensor("sz", TensorProto.FLOAT, [3], [1, 1, 2])]
    extra = [_vi("i", TensorProto.INT64, [1, 1]), _vi("u", TensorProto.FLOAT, [1, 3, 4])]
    outs = [_vi(n, TensorProto.UNDEFINED) for n in ("r", "s", "tv", "ti", "y", "sc", "rz")]
    found = {(n, op) for n, op, _ in _found(_model(nodes, [x, ax] + extra, outs, inits))}
    assert ("mean_dyn_axes", "ReduceMean") in found and ("sum_const_axes", "ReduceSum") not in found
    assert {("topk_unsorted", "TopK"), ("ln_3_outputs", "LayerNormalization"), ("scatter_add", "ScatterND"),
            ("resize_cubic", "Resize")} <= found


def test_a_restricted_operator_without_a_check_fails_and_quotes_the_restriction():
    c = _vi("c", TensorProto.BOOL, [])
    then = helper.make_graph([helper.make_node("Identity", ["a"], ["t"])], "then", [], [_vi("t", TensorProto.FLOAT)])
    other = helper.make_graph([helper.make_node("Identity", ["a"], ["e"])], "else", [], [_vi("e", TensorProto.FLOAT)])
    node = helper.make_node("If", ["c"], ["o"], name="branch", then_branch=then, else_branch=other)
    found = _found(_model([node], [c, _vi("a", TensorProto.FLOAT, [2])], [_vi("o", TensorProto.FLOAT)]))
    assert any(n == "branch" and p.startswith("restriction not checked automatically: Output tensors") for n, _, p in found)


def test_subgraphs_are_checked_too():
    c = _vi("c", TensorProto.BOOL, [])
    body = helper.make_graph([helper.make_node("BitwiseNot", ["i"], ["t"], name="inner_not")], "then", [],
                             [_vi("t", TensorProto.INT64)])
    other = helper.make_graph([helper.make_node("Identity", ["i"], ["e"], name="inner_id")], "else", [],
                              [_vi("e", TensorProto.INT64)])
    node = helper.make_node("If", ["c"], ["o"], name="branch", then_branch=body, else_branch=other)
    found = _found(_model([node], [c, _vi("i", TensorProto.INT64, [3])], [_vi("o", TensorProto.INT64)]))
    assert ("branch/then_branch/inner_not", "BitwiseNot", "operator not supported by the TensorRT ONNX parser") in found


def test_low_precision_types_are_checked_per_operator():
    x = _vi("x", TensorProto.BFLOAT16, [2, 3])
    m = _model([helper.make_node("Mish", ["x"], ["y"], name="mish"), helper.make_node("Relu", ["x"], ["z"], name="relu")],
               [x], [_vi("y", TensorProto.BFLOAT16), _vi("z", TensorProto.BFLOAT16)], opset=22)
    found = _found(m)
    assert ("mish", "Mish", "BF16 tensor x (parser takes ['FP16', 'FP32'])") in found
    assert not any(n == "relu" for n, _, _ in found)


def test_every_restriction_our_graphs_meet_has_a_check(engine_dir):
    ops = trt_table()["operators"]
    used = {n.op_type for p in engine_dir.glob("*.onnx") for n in onnx.load(str(p), load_external_data=False).graph.node}
    restricted = {op for op in used if ops.get(op, {}).get("restriction")}
    assert restricted and restricted <= set(RESTRICTION_CHECKS), restricted - set(RESTRICTION_CHECKS)


def test_converted_graphs_are_checked_in_their_own_types(engine_dir, tmp_path):
    mp = pytest.importorskip("indextts_trt.export.mixed_precision")
    pytest.importorskip("modelopt.onnx.autocast")
    out = tmp_path / "eng"
    shutil.copytree(engine_dir, out)
    mp.convert(out / "gpt_layer.onnx", out / "gpt_layer.fp16.onnx", "fp16")
    # the length regulator's Mish has no bf16 in the parser: the converter keeps it fp32, so the check passes
    c = mp.convert(out / "length_regulator.onnx", out / "length_regulator.bf16.onnx", "bf16")
    results = check_engine_dir(out)
    assert {"gpt_layer.fp16", "length_regulator.bf16"} <= set(results) and "vq2emb.fp16" not in results
    assert not any(results.values()), {k: v for k, v in results.items() if v}
    m = onnx.load(str(out / "length_regulator.bf16.onnx"))
    mish = {n.name for n in m.graph.node if n.op_type == "Mish"}
    assert mish and mish == set(c.also_fp32)
