"""Mixed-precision graphs (export/mixed_precision.py) on the tiny graphs: they load and run in ONNX
Runtime CPU, their float compute is really fp16, islands stay fp32, I/O follows the policy, and
they match the fp32 PyTorch reference within the spec's fp16 tolerances at the four parity points.
Types are re-derived here with ONNX's own shape inference, not read from the converter's report."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from indextts_trt.runtime.indextts2.config import tiny_config
from indextts_trt.runtime.indextts2.stages import stage_specs

STAGE_ORDER = tuple(stage_specs(tiny_config()))  # the tiny engine_dir's stages, in order

mp = pytest.importorskip("indextts_trt.export.mixed_precision")
pytest.importorskip("modelopt.onnx.autocast")

F32, F16, BF16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
COMPUTE = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Add", "Sub", "Mul", "Div", "Pow", "Softmax",
           "LayerNormalization", "InstanceNormalization", "BatchNormalization", "Sigmoid", "Tanh", "Gelu", "Sin",
           "Cos", "Sqrt", "Reciprocal", "ReduceMean", "ReduceSum", "ReduceL2", "Einsum", "Relu", "Mish", "Neg"}


def _types(path) -> tuple[onnx.ModelProto, dict[str, int]]:
    m = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    g = inferred.graph
    t = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    t.update({i.name: i.data_type for i in g.initializer})
    return m, t


def _float_types(node, types) -> set[int]:
    return {types[x] for x in list(node.input) + list(node.output) if x in types and types[x] in (F32, F16, BF16)}


@pytest.fixture(scope="module")
def converted(engine_dir, tmp_path_factory):
    """Every tiny stage converted to fp16 without islands, with the spec's I/O policy."""
    from indextts_trt.runtime.indextts2.config import load_config

    out = tmp_path_factory.mktemp("fp16")
    specs = stage_specs(load_config(engine_dir / "config.yaml"))
    convs = {}
    for name in STAGE_ORDER:
        src = out / f"{name}.onnx"
        shutil.copy(engine_dir / f"{name}.onnx", src)
        convs[name] = mp.convert(src, out / f"{name}.fp16.onnx", "fp16", [], mp.io_policy(specs[name], "fp16"))
    return out, specs, convs


def test_float_compute_is_fp16_and_the_io_follows_the_policy(converted):
    import onnxruntime as ort

    out, specs, convs = converted
    for name in STAGE_ORDER:
        m, types = _types(convs[name].path)
        ort.InferenceSession(str(convs[name].path), providers=["CPUExecutionProvider"])  # loads
        inits = [i for i in m.graph.initializer if i.data_type in (F32, F16)]
        assert sum(i.data_type == F16 for i in inits) > 0.9 * len(inits), name
        compute = [n for n in m.graph.node if n.op_type in COMPUTE and _float_types(n, types)]
        fp32 = [n.name for n in compute if F32 in _float_types(n, types)]
        assert compute and set(fp32) <= set(convs[name].also_fp32), (name, fp32)
        assert len(fp32) <= 2, (name, fp32)  # ModelOpt keeps a node fp32 only for a reason of its own
        io = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.input) + list(m.graph.output)}
        want = {"float32": F32, "float16": F16, "int64": TensorProto.INT64}
        assert io == {k: want[v] for k, v in mp.io_policy(specs[name], "fp16").items()}, name
    parts = specs["gpt_decode"].cache.inputs
    assert mp.io_policy(specs["gpt_decode"], "fp16") == {"mel_ids": "int64", "mel_pos": "int64", "cache_len": "int64",
                                                        **dict.fromkeys(parts, "float16"), "logits": "float32",
                                                        "kv_new": "float16"}


def test_the_fp16_kv_cache_is_read_and_written_without_casts(converted):
    """The decode step reads the runtime's fp16 cache and returns the new position's keys/values in
    fp16: no Cast touches a cache part or produces ``kv_new`` (half the bytes of an fp32 cache per step,
    and no conversion pass over it)."""
    _, specs, convs = converted
    m, types = _types(convs["gpt_decode"].path)
    g = m.graph
    parts = set(specs["gpt_decode"].cache.inputs)
    assert len(parts) > 2 and {types[p] for p in parts} == {F16} and types["kv_new"] == F16
    assert not any(n.op_type == "Cast" and (parts & set(n.input) or "kv_new" in n.output) for n in g.node)
    readers = [n for n in g.node if parts & set(n.input)]
    assert readers and all(F32 not in _float_types(n, types) for n in readers)


def test_islands_stay_fp32_with_casts_at_their_edges(engine_dir, tmp_path):
    from indextts_trt.export.trt_plan import island_nodes

    src = engine_dir / "dit_step.onnx"
    nodes = island_nodes(src, ["est.transformer.layers.0.ffn_norm"])
    assert nodes
    spec = stage_specs(_cfg(engine_dir))["dit_step"]
    c = mp.convert(src, tmp_path / "dit_step.fp16.onnx", "fp16", nodes, mp.io_policy(spec, "fp16"))
    m, types = _types(c.path)
    by_name = {n.name: n for n in m.graph.node}
    for name in nodes:
        assert _float_types(by_name[name], types) <= {F32}, name  # the island computes in fp32
    producers = {o: n for n in m.graph.node for o in n.output}
    island = set(nodes)
    entering = [producers[x] for n in nodes for x in by_name[n].input if x in producers
                and producers[x].name not in island and types.get(x) == F32]
    assert entering and all(p.op_type == "Cast" for p in entering)  # fp16 → fp32 at the island's edge
    outside = [n for n in m.graph.node if n.name not in island and n.op_type in COMPUTE]
    assert sum(F16 in _float_types(n, types) for n in outside) > 0.95 * len(outside)
    with pytest.raises(mp.ConversionError, match="not in the graph: node_nope"):
        mp.convert(src, tmp_path / "x.onnx", "fp16", ["node_nope"])


def _cfg(engine_dir):
    from indextts_trt.runtime.indextts2.config import load_config

    return load_config(engine_dir / "config.yaml")


def test_the_policy_refuses_what_it_cannot_carry(engine_dir, tmp_path):
    src = engine_dir / "gpt_decode.onnx"
    with pytest.raises(mp.ConversionError, match="input cache_len: cannot carry a int64 tensor as float16"):
        mp.convert(src, tmp_path / "x.onnx", "fp16", [], {"cache_len": "float16"})
    with pytest.raises(mp.ConversionError, match="names 'past'"):
        mp.convert(src, tmp_path / "x.onnx", "fp16", [], {"past": "float16"})
    with pytest.raises(mp.ConversionError, match="precision 'int8'"):
        mp.convert(src, tmp_path / "x.onnx", "int8")
    assert not (tmp_path / "x.onnx").exists()


@pytest.fixture(scope="module")
def reference(tiny_ckpt):
    from indextts_trt.export.variant import ReferenceModels

    return ReferenceModels(tiny_ckpt)


def _parity(reference, spec, path):
    from indextts_trt.export.parity import check_stage
    from indextts_trt.export.variant import run_reference

    module = reference.adapter(spec.name)
    return check_stage(spec, lambda f: run_reference(module, spec, f), mp.ort_runner(path),
                       reference.variant.sources[spec.name].sampler, precision="fp16")


@pytest.mark.slow
@pytest.mark.parametrize("name", [s for s in STAGE_ORDER if s != "semantic_codec"])
def test_fp16_graph_matches_the_pytorch_reference_at_every_parity_point(converted, reference, name):
    _, specs, convs = converted
    checks = _parity(reference, specs[name], convs[name].path)
    assert {c.point for c in checks} == {"opt", "min", "awkward", "max"}
    bad = [(c.point, c.output, c.max_abs_err, c.measure, c.limit) for c in checks if not c.passed]
    assert not bad, bad
    for c in checks:  # the fp16 error is real (an fp32 graph would be ~1e-6 here), and within its tolerance
        if c.stat in ("max", "quantile"):
            assert 1e-5 < c.max_abs_err, (c.point, c.output, c.max_abs_err)


@pytest.mark.slow
def test_semantic_codec_needs_the_whole_stage_in_fp32(converted, reference, tmp_path):
    """Its codes are gated exactly: fp16 flips codes (measured: 1-3 of 250 at opt/awkward/max);
    keeping the VQ alone in fp32 still flips one at max; only the whole stage in fp32 passes."""
    _, specs, convs = converted
    spec = specs["semantic_codec"]
    checks = _parity(reference, spec, convs["semantic_codec"].path)
    assert any(c.output == "codes" and not c.passed for c in checks)
    src = convs["semantic_codec"].path.with_name("semantic_codec.onnx")
    every = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node]
    c = mp.convert(src, tmp_path / "semantic_codec.fp16.onnx", "fp16", every, mp.io_policy(spec, "fp16"))
    assert c.casts == 0 and all(c.passed for c in _parity(reference, spec, c.path))


def test_bf16_graphs_are_written_but_onnxruntime_cpu_cannot_run_them(engine_dir, tmp_path):
    import onnxruntime as ort

    spec = stage_specs(_cfg(engine_dir))["gpt_layer"]
    c = mp.convert(engine_dir / "gpt_layer.onnx", tmp_path / "gpt_layer.bf16.onnx", "bf16", [],
                   mp.io_policy(spec, "bf16"))
    m, types = _types(c.path)  # strict type inference passes: a well-typed bf16 graph
    onnx.checker.check_model(m)
    assert {i.data_type for i in m.graph.initializer} == {BF16}
    assert all(_float_types(n, types) == {BF16} for n in m.graph.node if n.op_type == "MatMul")
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):  # measured with onnxruntime 1.32: no bf16 MatMul/Add
        ort.InferenceSession(str(c.path), providers=["CPUExecutionProvider"])


def test_large_graphs_keep_their_weights_in_one_external_file(engine_dir, tmp_path, monkeypatch):
    spec = stage_specs(_cfg(engine_dir))["gpt_layer"]
    small = mp.convert(engine_dir / "gpt_layer.onnx", tmp_path / "a.fp16.onnx", "fp16")
    monkeypatch.setattr(mp, "EXTERNAL_DATA_BYTES", 0)  # as if the weights passed 2 GB
    big = mp.convert(engine_dir / "gpt_layer.onnx", tmp_path / "b.fp16.onnx", "fp16")
    assert (tmp_path / "b.fp16.onnx.data").is_file() and not (tmp_path / "a.fp16.onnx.data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fp16.onnx", "b.fp16.onnx", "b.fp16.onnx.data"]
    feed = {"latent": np.random.default_rng(0).standard_normal(spec.shape(spec.inputs[0], {"N": 7})).astype(np.float32)}
    np.testing.assert_array_equal(mp.ort_runner(small.path)(feed)["projected"], mp.ort_runner(big.path)(feed)["projected"])
