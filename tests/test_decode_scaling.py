"""The decode-scaling benchmark measures the cache the runtime's decode loop really holds, counts
the bytes a step really streams, and writes its report (timings are not asserted)."""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from indextts_trt.benchmarks import decode_scaling as ds
from indextts_trt.runtime.options import RunOptions, SamplingOptions


def test_loop_capacity_is_what_the_pipeline_holds(ort_pipe, prompt_wav, monkeypatch):
    """Every decode step of a real generation: the benchmark's capacity rule gives the capacity of
    the cache the step read."""
    runner = ort_pipe.stage("gpt_decode")
    seen, orig = [], runner.run

    def spy(feed, *, cache=None, **kw):
        seen.append((int(feed["cache_len"][0]), cache.capacity))
        return orig(feed, cache=cache, **kw)

    monkeypatch.setattr(runner, "run", spy)
    codes = 150  # past the first allocation and at least one ×2 growth of the tiny model's cache
    opts = RunOptions(sampling=SamplingOptions(num_beams=2, max_new_tokens=codes, min_new_tokens=codes),
                      diffusion_steps=1, seed=1)
    ort_pipe.synthesize("Hello world.", prompt_wav, options=opts)
    assert seen[-1][1] == seen[0][0] + codes + 1 < runner.spec.dim_map["CAP"].max  # capped at the segment's bound
    limit = seen[0][0] + codes + 1  # the segment's own bound: its prompt and max_new_tokens
    prompt = seen[0][0]  # the first step's entry goes right after the prefill's positions
    assert len({cap for _, cap in seen}) >= 2  # the cache grew during the run
    for length, cap in seen:
        assert ds.loop_capacity(prompt, length + 1, limit) == cap


def _graph(tmp_path):
    table = numpy_helper.from_array(np.zeros((50, 8), np.float32), "table")  # gathered: one row read
    w = numpy_helper.from_array(np.zeros((8, 6), np.float32), "w")  # multiplied: read whole
    q = numpy_helper.from_array(np.zeros((6, 6), np.int8), "q")  # an int8 weight: 1 byte each
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("MatMul", ["e", "w"], ["y"]),
             helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["y", "qf"], ["z"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 6])], [table, w, q])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g), path)
    return path


def test_streamed_weight_bytes_skips_gathered_tables(tmp_path):
    assert ds.streamed_weight_bytes(_graph(tmp_path)) == 8 * 6 * 4 + 6 * 6


def test_flatness_and_report(engine_dir, ort_pipe):
    doc = ds.run(engine_dir, ("fp32",), (2,), (5, 150), prompt=20, threads=1, steps=2, log=lambda m: None)
    grown = [r for r in doc["results"] if r["cache"] == "grown"]
    assert [r["codes"] for r in grown] == [5, 150]
    assert grown[1]["capacity"] > grown[0]["capacity"]  # more codes: a larger cache read
    assert grown[1]["limit_ms"] > grown[0]["limit_ms"]
    (full,) = [r for r in doc["results"] if r["cache"] == "all positions"]
    assert full["capacity"] == ort_pipe.stage("gpt_decode").spec.dim_map["CAP"].max
    (f,) = doc["flatness"]
    assert f["rows"] == 2 and np.isclose(f["growth"], grown[1]["ms_per_step"] / grown[0]["ms_per_step"] - 1)
    md = ds.markdown(doc)
    assert "| fp32 (fp32) | 2 | 150 |" in md and "## Flatness" in md
    json.dumps(doc)  # the report is plain JSON

