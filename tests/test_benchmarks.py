"""The benchmark's --quick mode: the report is produced and well formed (timings are not judged)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from indextts_trt.benchmarks.report import STAGES
from indextts_trt.benchmarks.run import bench
from indextts_trt.benchmarks.workload import QUICK_TEXTS, Workload


@pytest.fixture(scope="module")
def quick_doc(tiny_ckpt, engine_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    work = replace(Workload(runs=2, warmup=1, threads=2), texts=QUICK_TEXTS, diffusion_steps=3, stream_chunk=(8, 2))
    doc = bench(tiny_ckpt, engine_dir, out, "cpu-quick", work, ("torch", "ort"), quick=True, log=lambda m: None)
    return out, doc


def test_report_files_are_written_and_consistent(quick_doc, engine_dir):
    out, doc = quick_doc
    on_disk = json.loads((out / "cpu-quick.json").read_text())
    assert on_disk["summary"] == doc["summary"] and on_disk["workload"]["runs"] == 2
    assert {"machine", "versions", "manifest_sha256", "limits", "raw", "workload"} <= set(on_disk)
    assert len(on_disk["manifest_sha256"]) == 64
    md = (out / "cpu-quick.md").read_text()
    for t in QUICK_TEXTS:
        assert f"| {t.name} | {t.codes} | PyTorch reference (eager fp32) |" in md
        assert f"| {t.name} | {t.codes} | ONNX Runtime fp32 |" in md
    assert "fixed number of codes per text" in md and "not TensorRT" in md
    # the report names the engines it measured, not "Manifest ." when they live elsewhere
    assert f"Engines: {engine_dir.resolve()} (manifest sha256 {on_disk['manifest_sha256'][:16]})." in md
    png = out / "cpu-quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_follow_the_fixed_work(quick_doc):
    _, doc = quick_doc
    s, w = doc["summary"], doc["workload"]
    for backend in ("torch", "ort"):
        for t in QUICK_TEXTS:
            r = s[backend]["texts"][t.name]
            assert r["codes"] == t.codes
            f = r["figures"]
            # the last sampled code needs no decode step: codes - 1 steps of the 3-beam cache
            assert f["gpt_decode_steps"] == t.codes - 1
            assert f["dit_ms_per_step"] > 0 and f["gpt_decode_ms_per_step"] > 0 and f["rtf"] > 0
            assert 0 < f["fraction_gpt_decode"] and 0 < f["fraction_dit"] and 0 < f["fraction_bigvgan"]
            assert all(r["stages"][k]["p90"] >= r["stages"][k]["median"] >= 0 for k in (*STAGES, "total"))
            assert r["speedup_vs_reference"]["total"] > 0
        raw_runs = doc["raw"][backend]["runs"][QUICK_TEXTS[0].name]
        assert len(raw_runs) == w["runs"] and all(run["dit_step_calls"] == w["diffusion_steps"] for run in raw_runs)
    assert s["torch"]["texts"][QUICK_TEXTS[0].name]["speedup_vs_reference"]["total"] == pytest.approx(1.0)
    assert len(s["ort"]["ttfa"]["seconds"]) == w["runs"] and s["ort"]["ttfa"]["chunk"] == [8, 2]
    costs = doc["raw"]["torch"]["costs"]
    assert costs["gpt_step_weight_bytes"] > 0 and all(v > 0 for v in costs["dit_step_flops"].values())


@pytest.fixture(scope="module")
def fp16_beam1_doc(tiny_ckpt, engine_dir, tmp_path_factory):
    """fp32 and fp16 ONNX Runtime columns beside the reference in one run, at 1 beam; the bench
    makes the fp16 graphs itself, in a copy of the shared build (which stays fp32-only)."""
    eng = tmp_path_factory.mktemp("bench-fp16") / "engines"
    shutil.copytree(engine_dir, eng)
    work = replace(Workload(runs=1, warmup=0, threads=2, num_beams=1), texts=QUICK_TEXTS[:1], diffusion_steps=3,
                   stream_chunk=(8, 2))
    out = tmp_path_factory.mktemp("bench-fp16-out")
    doc = bench(tiny_ckpt, eng, out, "cpu-quick-fp16", work, ("torch", "ort"), quick=True, log=lambda m: None,
                precisions=("fp32", "fp16"))
    return out, eng, doc


def test_two_precisions_run_side_by_side(fp16_beam1_doc):
    out, eng, doc = fp16_beam1_doc
    s, t = doc["summary"], QUICK_TEXTS[0]
    assert list(s) == ["torch", "ort", "ort-fp16"] == doc["backends"]
    assert doc["columns"]["ort-fp16"] == {"backend": "ort", "precision": "fp16"}
    stages = doc["raw"]["ort-fp16"]["stage_precisions"]
    assert doc["raw"]["ort-fp16"]["precision"] == "fp16" and "fp16" in stages.values()
    assert set(doc["raw"]["ort"]["stage_precisions"].values()) == {"fp32"}
    manifest = json.loads((eng / "manifest.json").read_text())
    assert all("fp16" in st["graphs"] for st in manifest["stages"].values())  # made by the bench
    for key in ("ort", "ort-fp16"):
        r = s[key]["texts"][t.name]
        assert r["codes"] == t.codes and r["speedup_vs_reference"]["total"] > 0 and "ratio_vs_peer" not in r
    md = (out / "cpu-quick-fp16.md").read_text()
    assert f"| {t.name} | {t.codes} | ONNX Runtime fp16 |" in md and f"| {t.name} | {t.codes} | ONNX Runtime fp32 |" in md
    kept = sorted(k for k, v in stages.items() if v != "fp16")
    assert f"ONNX Runtime fp16: fp16 in {len(stages) - len(kept)} of {len(stages)} stages" in md
    assert " vs peer |" not in md and "## Against" not in md
    on_disk = json.loads((out / "cpu-quick-fp16.json").read_text())
    assert on_disk["columns"] == doc["columns"] and on_disk["summary"] == doc["summary"]


def test_one_beam_changes_the_work(quick_doc, fp16_beam1_doc):
    """--beams 1: each decode step runs one row (three by default), the cache the reference's cost
    model counts is a third, and the report says so."""
    (_, three), (out, _, one) = quick_doc, fp16_beam1_doc
    name = QUICK_TEXTS[0].name
    assert (three["workload"]["num_beams"], one["workload"]["num_beams"]) == (3, 1)
    for key in ("ort", "ort-fp16"):
        assert [r["gpt_decode_rows"] for r in one["raw"][key]["runs"][name]] == [1]
    assert {r["gpt_decode_rows"] for r in three["raw"]["ort"]["runs"][name]} == {3}
    kv1, kv3 = (d["raw"]["torch"]["costs"]["kv_bytes_per_position"] for d in (one, three))
    assert kv3 == 3 * kv1 > 0
    md = (out / "cpu-quick-fp16.md").read_text()
    assert "1 beam (one sampled sequence) (top-k" in md


def test_cli_rejects_bad_precision_and_beams(tmp_path):
    from typer.testing import CliRunner

    from indextts_trt.export.cli import app

    for args, msg in ((["--precision", "int4"], "--precision 'int4': choose from fp32"), (["--beams", "0"], "--beams 0"),
                      (["--texts", "en_short,klingon"], "choose from en_short, zh_short")):
        r = CliRunner().invoke(app, ["bench", "--quick", *args, "--out", str(tmp_path)])
        assert r.exit_code != 0 and msg in r.output, r.output
    assert not list(tmp_path.iterdir())


def test_cli_rejects_unknown_backend(tmp_path):
    from typer.testing import CliRunner

    from indextts_trt.export.cli import app

    r = CliRunner().invoke(app, ["bench", "--quick", "--backend", "tensorflow", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "choose from torch, ort" in r.output
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def quick_doc_25(tiny_ckpt_25, engine_dir_25, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench25")
    # the fixed work of quick_doc, one run and no warm-up (the run count only sets a median's robustness)
    work = replace(Workload(runs=1, warmup=0, threads=2), texts=QUICK_TEXTS, diffusion_steps=3, stream_chunk=(8, 2))
    return bench(tiny_ckpt_25, engine_dir_25, out, "cpu-quick-25", work, ("torch", "ort"), quick=True,
                 log=lambda m: None)


def test_the_25_report_runs_the_same_speech_at_25_codes_a_second(quick_doc_25):
    s = quick_doc_25["summary"]
    assert {r["variant"] for r in quick_doc_25["raw"].values()} == {"indextts-2.5"}
    for backend in ("torch", "ort"):
        for t in QUICK_TEXTS:
            r = s[backend]["texts"][t.name]
            assert r["codes"] == Workload.codes_for(t, 25.0) == t.codes // 2  # same seconds of speech
            f = r["figures"]
            assert f["gpt_decode_steps"] == r["codes"] - 1
            assert f["gpt_generate_ms_per_code"] * r["codes"] == pytest.approx(1e3 * r["stages"]["gpt_generate"]["median"])
            assert r["stages"]["codec_decode"]["median"] > 0 and r["stages"]["gpt_latents"]["median"] == 0
            assert 0 < f["fraction_gpt_decode"] and 0 < f["fraction_dit"]


def test_compare_puts_25_beside_2(quick_doc, quick_doc_25, tmp_path):
    from indextts_trt.benchmarks.compare import compare, markdown, write

    _, doc2 = quick_doc
    c = compare(doc2, quick_doc_25)
    assert c["variants"] == ["indextts-2", "indextts-2.5"] and len(c["rows"]) == 2 * 2 * len(QUICK_TEXTS)
    for r in c["ratios"]:
        a, b = (x for x in c["rows"] if x["text"] == r["text"] and x["backend"] == r["backend"])
        assert (a["codes"], b["codes"]) == (2 * b["codes"], b["codes"])
        assert r["total_s"] == pytest.approx(b["total_s"] / a["total_s"])
    md = markdown(c)
    assert "| en_short | 0.2 | ONNX Runtime fp32 | indextts-2.5 | 6 |" in md
    write(c, tmp_path, "cmp")
    assert json.loads((tmp_path / "cmp.json").read_text())["ratios"] == c["ratios"]
    other = json.loads(json.dumps(quick_doc_25))
    other["workload"]["diffusion_steps"] = 25
    with pytest.raises(ValueError, match="workload.diffusion_steps"):
        compare(doc2, other)
    with pytest.raises(ValueError, match="both reports are of indextts-2"):
        compare(doc2, doc2)
def test_reports_go_to_scratch_unless_asked():
    """A run leaves the checkout's committed results alone: they are rewritten only with --out
    benchmarks/results; the default is out/bench, which git ignores."""
    import subprocess

    import typer

    from indextts_trt.benchmarks.run import DEFAULT_OUT, app

    (out,) = [p for p in typer.main.get_command(app).params if p.name == "out"]
    assert out.default == DEFAULT_OUT == Path("out/bench")
    root = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(root / DEFAULT_OUT / "cpu-quick.json")], cwd=root)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0
