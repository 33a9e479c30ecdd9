"""ONNX export + parity gate: every stage on tiny checkpoints, the gate failing on a perturbed
graph, the cache, bad input, adapter equivalence with the reference, the in-place KV update."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from indextts_trt.export.build import BuildError, build
from indextts_trt.runtime.errors import OptionError
from indextts_trt.runtime.manifest import SCHEMA_VERSION, ManifestError, load_manifest
from indextts_trt.export.parity import check_stage
from indextts_trt.export.indextts2.sources import SOURCES
from indextts_trt.export.variant import ReferenceModels, run_reference
from indextts_trt.reference.generation import latent_inputs, latents
from indextts_trt.runtime.indextts2.stages import stage_specs


@pytest.fixture(scope="module")
def engines(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("engines")
    rep = build(tiny_ckpt, out, progress=False)
    return out, rep


def test_registry_every_stage_has_spec_source_and_parity(tiny_cfg, engines):
    specs = stage_specs(tiny_cfg)
    assert set(specs) == set(SOURCES)
    _, rep = engines
    checked = {c.stage for c in rep.checks}
    assert checked == set(specs), f"stages without a parity check: {set(specs) - checked}"
    for name in specs:  # every output of every stage, at every point
        spec = specs[name]
        got = {(c.point, c.output) for c in rep.checks if c.stage == name}
        assert got == {(p, t.name) for p in ("opt", "min", "awkward", "max") for t in spec.outputs}


def test_build_passes_and_writes_manifest_and_metadata(engines, tiny_cfg):
    out, rep = engines
    order = list(stage_specs(tiny_cfg))
    assert rep.ok and not rep.failed and rep.built == order  # in pipeline order
    m = load_manifest(out)
    assert m["schema_version"] == SCHEMA_VERSION and list(m["stages"]) == order and m["variant"] == "indextts-2"
    st = m["stages"]["gpt_decode"]
    assert st["parity"]["passed"] and st["dims"]["CAP"]["max"] > st["dims"]["CAP"]["min"]
    assert all(len(h) == 64 for h in st["files"].values()) and st["checkpoint_files"]["gpt"]
    model = onnx.load(str(out / "gpt_decode.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["indextts_trt.stage"] == "gpt_decode" and meta["indextts_trt.graph_key"] == st["graph_key"]
    parts = stage_specs(tiny_cfg)["gpt_decode"].cache.inputs
    assert len(parts) == 2 * tiny_cfg.gpt.layers and parts[:3] == ("key.0", "value.0", "key.1")
    assert [i.name for i in model.graph.input] == ["mel_ids", "mel_pos", "cache_len", *parts]
    # each part is an input of its own: no Slice copies a part out of a whole-cache input
    assert not any(n.op_type in ("Slice", "Split", "Gather") and set(n.input) & set(parts) for n in model.graph.node)
    assert "| dit_step | max |" in (out / "parity_report.md").read_text()


def test_graphs_have_no_inf_masks(engines, tiny_cfg):
    """fp16 safety: no -inf / finfo.max constants in any graph (masks are -1e4 biases)."""
    out, _ = engines
    for name in stage_specs(tiny_cfg):
        g = onnx.load(str(out / f"{name}.onnx")).graph
        for init in g.initializer:
            a = onnx.numpy_helper.to_array(init)
            if a.dtype.kind == "f" and a.size:
                assert np.all(np.isfinite(a)) and np.abs(a).max() < 3e38, (name, init.name)


def test_rerun_uses_the_cache_and_force_rebuilds(tiny_ckpt, engines):
    out, _ = engines
    rep = build(tiny_ckpt, out, stages=["vq2emb", "gpt_layer"], progress=False)
    assert rep.skipped == ["vq2emb", "gpt_layer"] and not rep.built
    rep = build(tiny_ckpt, out, stages=["gpt_layer"], force=True, progress=False)
    assert rep.built == ["gpt_layer"]
    (out / "vq2emb.onnx").write_bytes(b"tampered")  # a changed file is rebuilt, not trusted
    assert build(tiny_ckpt, out, stages=["vq2emb"], progress=False).built == ["vq2emb"]


def test_gate_fails_on_a_perturbed_graph(tiny_ckpt, engines, tmp_path):
    out, _ = engines
    models = ReferenceModels(tiny_ckpt)
    spec = stage_specs(models.cfg)["gpt_layer"]
    model = onnx.load(str(out / "gpt_layer.onnx"))
    biggest = max(model.graph.initializer, key=lambda i: np.prod(i.dims))
    arr = onnx.numpy_helper.to_array(biggest).copy()
    arr.flat[0] += 1e-2  # one weight off by 0.01
    biggest.CopyFrom(onnx.numpy_helper.from_array(arr, biggest.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "bad.onnx"), providers=["CPUExecutionProvider"])
    m = models.adapter("gpt_layer")
    checks = check_stage(spec, lambda f: run_reference(m, spec, f),
                         lambda f: dict(zip(["projected"], sess.run(None, f))), SOURCES["gpt_layer"].sampler)
    assert not all(c.passed for c in checks)


def test_build_cli_fails_and_writes_nothing_when_parity_fails(tiny_ckpt, tmp_path):
    code = (
        "import sys, indextts_trt.export.parity as p\n"
        "orig = p.judge\n"
        "p.judge = lambda r, g, t: (False,) + orig(r, g, t)[1:]\n"
        "import indextts_trt.export.build as b\n"
        "from indextts_trt.export.cli import main\n"
        "sys.argv = ['tts-export', 'build', '--checkpoints', sys.argv[1], '--out', sys.argv[2], '--stage', 'vq2emb']\n"
        "main()\n")
    r = subprocess.run([sys.executable, "-c", code, str(tiny_ckpt), str(tmp_path / "e")], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "PARITY FAILED" in r.stderr and "vq2emb" in r.stderr
    assert not (tmp_path / "e" / "vq2emb.onnx").exists()
    assert not [p for p in (tmp_path / "e").iterdir() if p.name.startswith(".build-")]


def test_bad_requests(tiny_ckpt, tmp_path, monkeypatch):
    with pytest.raises(OptionError, match="unknown stage.*nope"):
        build(tiny_ckpt, tmp_path / "a", stages=["nope"], progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ManifestError, match="newer than this tool"):
        build(tiny_ckpt, tmp_path / "b", stages=["vq2emb"], progress=False)
    import indextts_trt.export.build as b

    real_access = b.os.access
    monkeypatch.setattr(b.os, "access", lambda p, mode: False if str(p).endswith("ro") else real_access(p, mode))
    with pytest.raises(BuildError, match="ro is not writable"):  # root bypasses chmod, so fake the check
        build(tiny_ckpt, tmp_path / "ro", stages=["vq2emb"], progress=False)
    (tmp_path / "ck").mkdir()
    from indextts_trt.runtime.config import ConfigError

    with pytest.raises(ConfigError, match="config file not found"):
        build(tmp_path / "ck", tmp_path / "c", progress=False)


def test_decode_adapter_equals_reference_cached_step(tiny_ckpt, tiny_cfg):
    """One decode step over rows of different cache lengths (as batched requests have) equals the
    reference's own cached step for each row alone; the step returns only the new entries."""
    models = ReferenceModels(tiny_ckpt)
    gpt = models.get("gpt")
    dec, pre = models.adapter("gpt_decode"), models.adapter("gpt_prefill")
    conds = torch.randn(2, tiny_cfg.gpt.condition_num_latent + 2, tiny_cfg.gpt.model_dim)
    text = torch.randint(2, 500, (2, 9))
    with torch.no_grad():
        hidden, logits, kv = pre(conds, text, torch.tensor([[97], [97]]), torch.zeros(2, 1, dtype=torch.long))
        # (the graph is exported at batch 1; the adapter itself is batch-agnostic)
        s = kv.shape[4]
        cap = s + 5
        buf = torch.randn(*kv.shape[:4], cap, kv.shape[5])  # garbage beyond each row's length
        buf[..., :s, :] = kv
        lens = torch.tensor([s, s - 2])  # row 1 has 2 fewer valid positions
        tok, pos = torch.tensor([[5], [11]]), torch.tensor([[2], [2]])
        before = buf.clone()
        out_logits, kv_new = dec(tok, pos, lens, *buf.flatten(0, 1))  # the parts: keys 0, values 0, keys 1, ...
        assert torch.equal(buf, before)  # the graph never writes the cache
        assert kv_new.shape == (*kv.shape[:4], 1, kv.shape[5])
        x = torch.cat([conds, gpt.text_embedding(text) + gpt.text_pos_embedding.emb.weight[:9],
                       gpt.mel_embed(torch.tensor([[97], [97]]), torch.zeros(2, 1, dtype=torch.long))], 1)
        h, cache = gpt.run_gpt(x)
        torch.testing.assert_close(logits, gpt.logits(h[:, -1]), atol=1e-5, rtol=1e-5)
        for b, n in enumerate(lens.tolist()):  # the reference: row b alone, its cache cut at its length
            past = [(k[b:b + 1, :, :n], v[b:b + 1, :, :n]) for k, v in cache]
            h2, cache2 = gpt.run_gpt(gpt.mel_embed(tok[b:b + 1], pos[b:b + 1]), past)
            torch.testing.assert_close(out_logits[b:b + 1], gpt.logits(h2[:, -1]), atol=1e-5, rtol=1e-5)
            for i, (k2, v2) in enumerate(cache2):
                torch.testing.assert_close(kv_new[i, 0, b:b + 1], k2[:, :, n:n + 1], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(kv_new[i, 1, b:b + 1], v2[:, :, n:n + 1], atol=1e-5, rtol=1e-5)


def test_prefill_adapter_gives_the_latent_pass(tiny_ckpt, tiny_cfg):
    models = ReferenceModels(tiny_ckpt)
    gpt, pre = models.get("gpt"), models.adapter("gpt_prefill")
    conds = torch.randn(1, tiny_cfg.gpt.condition_num_latent + 2, tiny_cfg.gpt.model_dim)
    text_ids, codes = torch.tensor([40, 41, 300]), torch.tensor([3, 9, 60, 7])
    with torch.no_grad():
        ref = latents(gpt, conds, text_ids, codes)
        text = torch.cat([torch.tensor([0]), text_ids, torch.tensor([1])])[None]
        mel = torch.cat([torch.tensor([97]), codes, torch.tensor([98])])[None]
        hidden, _, _ = pre(conds, text, mel, torch.arange(6)[None])
    assert latent_inputs(gpt, conds, text_ids, codes).shape[1] == hidden.shape[1]
    torch.testing.assert_close(hidden[:, -6:-2], ref, atol=1e-6, rtol=1e-6)


def test_the_runner_writes_each_rows_new_entry_into_its_cache(engines, tiny_cfg):
    """The decode graph reads the host cache in place (one buffer, never reallocated) and the
    runner writes the step's new entries at each row's own position; nothing else changes."""
    from indextts_trt.runtime.ort_backend import OrtRunner

    out, _ = engines
    spec = stage_specs(tiny_cfg)["gpt_decode"]
    runner = OrtRunner(out / "gpt_decode.onnx", spec, threads=1)
    b, cap = 3, 40
    cache = runner.new_cache(b, cap)
    cache.array[..., :12, :] = np.random.default_rng(0).standard_normal(cache.array[..., :12, :].shape)
    before, ptr = cache.array.copy(), cache.array.ctypes.data
    lens = np.array([10, 12, 11], np.int64)
    res = runner.run({"mel_ids": np.array([[1], [2], [3]], np.int64), "mel_pos": np.full((b, 1), 2, np.int64),
                      "cache_len": lens}, cache=cache)
    assert set(res) == {"logits"} and cache.array.ctypes.data == ptr
    changed = np.argwhere(np.any(cache.array != before, axis=(0, 1, 3, 5)))  # (row, position) pairs
    assert sorted(map(tuple, changed)) == [(0, 10), (1, 12), (2, 11)]
    written = cache.array.copy()
    cache.grow(57)  # more capacity keeps every entry, the new ones included
    assert cache.capacity == 57 and np.array_equal(cache.array[..., :cap, :], written)
    assert not np.any(cache.array[..., cap:, :])


def test_every_graph_is_tensorrt_parseable_by_the_table(engines):
    from indextts_trt.export.trt_check import check_engine_dir

    out, _ = engines
    findings = {k: v for k, v in check_engine_dir(out).items() if v}
    assert not findings, {k: [(f.op, f.problem) for f in v] for k, v in findings.items()}


def test_trt_check_flags_what_the_parser_rejects():
    from onnx import TensorProto, helper

    from indextts_trt.export.trt_check import check_model, trt_table

    assert "10.15" in trt_table()["source"] and trt_table()["opset_range"] == [9, 24]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 300])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.INT64, None)
    w = helper.make_tensor_value_info("w", TensorProto.INT64, None)
    nodes = [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[100], strides=[100], ceil_mode=1),
             helper.make_node("Clip", ["i"], ["z"]), helper.make_node("BitwiseNot", ["i"], ["w"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, i], [y, z, w]), opset_imports=[helper.make_opsetid("", 20)])
    found = {(f.op, f.problem.split(" ")[0]) for f in check_model(model, "toy")}
    assert ("AveragePool", "1-D") in found and ("BitwiseNot", "operator") in found and ("Clip", "INT64") in found


def test_code_changes_invalidate_the_cache(monkeypatch, tiny_ckpt, engines):
    import indextts_trt.export.build as b

    out, _ = engines
    assert build(tiny_ckpt, out, stages=["vq2emb"], progress=False).skipped == ["vq2emb"]
    real = b.files_fingerprint
    monkeypatch.setattr(b, "files_fingerprint", lambda files: real(files) + ("x" if b.EXPORTER_CODE[0] in files else ""))
    assert build(tiny_ckpt, out, stages=["vq2emb"], progress=False).built == ["vq2emb"]
    monkeypatch.undo()  # leave the shared engines as the real code builds them (the next test expects a hit)
    assert build(tiny_ckpt, out, stages=["vq2emb"], progress=False).built == ["vq2emb"]


def test_a_tolerance_change_rejudges_and_re_exports_nothing(monkeypatch, tiny_ckpt, engines, tiny_cfg):
    """Tolerances shape no graph: a changed one runs the gate again on the same file, and a
    tolerance the graph no longer meets fails the stage instead of silently passing."""
    import dataclasses

    import indextts_trt.runtime.indextts2 as v2
    from indextts_trt.runtime.spec import Tolerance

    out, _ = engines
    build(tiny_ckpt, out, stages=["vq2emb"], progress=False)  # current, whatever earlier tests did to it
    before = (out / "vq2emb.onnx").read_bytes()
    real = v2.stage_specs

    def tightened(cfg, tol):
        specs = real(cfg)
        return {**specs, "vq2emb": dataclasses.replace(specs["vq2emb"], tolerances={"embedding": {"fp32": tol}})}

    monkeypatch.setattr(v2, "stage_specs", lambda cfg: tightened(cfg, Tolerance("max", atol=1e-3, rtol=0.0)))
    rep = build(tiny_ckpt, out, stages=["vq2emb"], progress=False)
    assert rep.rejudged == ["vq2emb"] and not rep.built and rep.ok
    assert (out / "vq2emb.onnx").read_bytes() == before
    assert build(tiny_ckpt, out, stages=["vq2emb"], progress=False).skipped == ["vq2emb"]  # judged: cached now
    # 10 000 dB: more than even a bit-exact graph has (err 0 gives ~300 dB against the 1e-30 floor)
    monkeypatch.setattr(v2, "stage_specs", lambda cfg: tightened(cfg, Tolerance("snr", snr_db=1e4)))
    rep = build(tiny_ckpt, out, stages=["vq2emb"], progress=False)
    assert rep.failed == ["vq2emb"] and not load_manifest(out)["stages"]["vq2emb"]["parity"]["passed"]
    monkeypatch.setattr(v2, "stage_specs", real)
    assert build(tiny_ckpt, out, stages=["vq2emb"], progress=False).rejudged == ["vq2emb"]  # and back
    assert (out / "vq2emb.onnx").read_bytes() == before


def test_precision_flag_reuses_the_fp32_graphs(tiny_ckpt, engines, tmp_path):
    """`build --precision fp16` on a directory of fp32 graphs exports nothing again."""
    import shutil

    from typer.testing import CliRunner

    from indextts_trt.export.cli import app

    out, _ = engines
    copy = tmp_path / "e"
    shutil.copytree(out, copy)
    sha = load_manifest(copy)["stages"]["gpt_layer"]["files"]["gpt_layer.onnx"]
    r = CliRunner().invoke(app, ["build", "--checkpoints", str(tiny_ckpt), "--out", str(copy), "--stage", "gpt_layer",
                                 "--precision", "fp16"])
    assert "cached  gpt_layer" in r.output and "built   gpt_layer" not in r.output, r.output
    assert load_manifest(copy)["stages"]["gpt_layer"]["files"]["gpt_layer.onnx"] == sha


def test_a_killed_build_leaves_temporaries_that_the_next_build_removes(tiny_ckpt, engines):
    out, _ = engines
    stale = out / ".build-vq2emb-dead"
    stale.mkdir()
    (stale / "vq2emb.onnx").write_bytes(b"half")
    build(tiny_ckpt, out, stages=["vq2emb"], progress=False)
    assert not stale.exists() and not list(out.glob(".build-*"))
