"""The bench's peer column without the peer: its driver's pure helpers on plain data, the result
check, the ratios and the report's peer section from a hand-made raw document, and the CLI's
one-line errors when the peer's interpreter is missing or cannot import it (CI never installs it)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from indextts_trt.benchmarks import peers, report
from indextts_trt.benchmarks.peers import indextts_onnx as drv

DRIVER = Path(drv.__file__)


def test_the_driver_imports_only_the_port_numpy_and_the_standard_library():
    """It runs in the port's environment, which has no indextts_trt (nor torch)."""
    tops = set()
    for node in ast.walk(ast.parse(DRIVER.read_text())):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            tops.add(node.module.split(".")[0])
    assert tops - set(sys.stdlib_module_names) == {"numpy", "indextts_onnx"}


def test_ban_stop_never_draws_the_stop_code_and_leaves_the_logits_alone():
    rng = np.random.default_rng(0)

    def sample(logits, temperature=1.0):  # a plain softmax draw, as the port's sampler ends
        p = np.exp((logits - logits.max()) / temperature)
        return int(rng.choice(len(p), p=p / p.sum()))

    logits = np.zeros(8194, np.float32)
    logits[drv.STOP_CODE] = 50.0  # the stop code would win almost every draw
    assert sample(logits) == drv.STOP_CODE
    banned = drv.ban_stop(sample)
    draws = {banned(logits, temperature=0.8) for _ in range(200)}
    assert drv.STOP_CODE not in draws and len(draws) > 100
    assert logits[drv.STOP_CODE] == 50.0


def test_to_row_maps_the_ports_timers_onto_our_stages():
    c = drv.Clock()
    for name, secs in (("text", 0.01), ("conditioning", 0.5), ("generate", 2.0), ("gpt2_forward", 0.3),
                       ("s2mel", 1.5), ("bigvgan", 0.4), ("gpt2_init", 0.2)):
        c.add(name, secs)
    for _ in range(39):
        c.add("gpt2_step", 0.04)
    for _ in range(25):
        c.add("dit_step", 0.05)
    row = drv.to_row(c, 4.5, 0.9, 40)
    assert row["gpt_generate"] == pytest.approx(1.7) and row["gpt_latents"] == pytest.approx(0.3)
    assert (row["text"], row["conditioning"], row["s2mel"], row["bigvgan"]) == (0.01, 0.5, 1.5, 0.4)
    assert row["gpt_decode_step_calls"] == 39 and row["gpt_decode_step"] == pytest.approx(39 * 0.04)
    assert row["dit_step_calls"] == 25 and row["gpt_prefill_calls"] == 1
    assert (row["total"], row["audio_seconds"], row["codes"]) == (4.5, 0.9, 40)
    c.reset()
    assert drv.to_row(c, 0.0, 0.0, 0)["gpt_generate"] == 0.0 and "dit_step" not in drv.to_row(c, 0.0, 0.0, 0)


def test_the_model_folder_check_and_the_precision_it_loads(tmp_path):
    assert set(drv.missing_files(tmp_path)) == {f"{g}.onnx" for g in drv.GRAPHS} | {"bpe.model"}
    for g in drv.GRAPHS:
        (tmp_path / f"{g}.onnx").write_bytes(b"\x08\x07" + (b"MatMulInteger" if g == "gpt2_step" else b"MatMul"))
    (tmp_path / "campplus_int8.onnx").write_bytes(b"x")
    (tmp_path / "dit_step_int8.onnx").write_bytes(b"x")  # IndexTTSInfer loads the DiT fp32 all the same
    assert drv.missing_files(tmp_path) == ["bpe.model"]
    (tmp_path / "bpe.model").write_bytes(b"x")
    assert drv.missing_files(tmp_path) == []
    p = drv.precisions(tmp_path)
    assert p["gpt2_step"] == "int8" and p["campplus"] == "int8"
    assert p["dit_step"] == "fp32" and p["gpt2_init"] == "fp32" and p["bigvgan"] == "fp32"


def _work(**kw):
    return {"texts": [{"name": "en_short", "codes": 40}], "runs": 2, "diffusion_steps": 25, **kw}


def _run(**kw):
    r = {k: 0.1 for k in (*drv.STAGES, "total", "audio_seconds")}
    return {**r, "codes": 40, "dit_step_calls": 25, **kw}


def test_parse_result_names_the_first_gap():
    good = {"load_seconds": 1.0, "peak_rss_bytes": 1, "runs": {"en_short": [_run(), _run()]}}
    assert peers.parse_result(good, _work()) is good
    bad = [({"runs": good["runs"], "peak_rss_bytes": 1}, "no 'load_seconds'"),
           ({**good, "runs": {"en_short": [_run()]}}, "1 runs, expected 2"),
           ({**good, "runs": {}}, "0 runs"),
           ({**good, "runs": {"en_short": [_run(), {**_run(), "s2mel": None}]}}, "no 's2mel'"),
           ({**good, "runs": {"en_short": [_run(codes=41), _run()]}}, "41 codes, the work forces 40"),
           ({**good, "runs": {"en_short": [_run(dit_step_calls=10), _run()]}}, "10 DiT steps")]
    for doc, msg in bad:
        with pytest.raises(ValueError, match=msg):
            peers.parse_result(doc, _work())


def _raw(stage_s: dict, **extra) -> dict:
    run = {**{k: 0.0 for k in report.STAGES}, **stage_s, "total": sum(stage_s.values()), "audio_seconds": 0.8,
           "codes": 40, "gpt_decode_step": 0.39, "gpt_decode_step_calls": 39, "dit_step": 1.0, "dit_step_calls": 25}
    return {"runs": {"en_short": [run]}, "peak_rss_bytes": 2**30, "load_seconds": 1.0, **extra}


@pytest.fixture
def doc():
    """Three columns of plain numbers: the ratios below are worked out by hand from them."""
    raw = {"torch": _raw({"gpt_generate": 4.0, "s2mel": 2.0, "bigvgan": 1.0}),
           "ort": _raw({"gpt_generate": 2.0, "s2mel": 1.0, "bigvgan": 1.0},
                       precision="fp32", stage_precisions={"gpt_decode": "fp32"}),
           "indextts-onnx": _raw({"gpt_generate": 1.0, "s2mel": 1.5, "bigvgan": 0.5, "text": 0.5}, peer="indextts-onnx",
                                 num_beams=1, graph_precisions={"gpt2_step": "int8", "dit_step": "fp32"})}
    lim = {"threads": 2, "memory_bandwidth_bytes_per_s": 1e10, "matmul_flops_per_s": 1e11}
    d = {"title": "t", "date": "d", "machine": {"cpu": "c", "cores": 2, "memory_gib": 24.0, "gpu": ""},
         "versions": {}, "checkpoints_size": "full", "checkpoints_note": "n", "engine_dir": "", "manifest_sha256": "",
         "workload": {"num_beams": 3, "top_k": 30, "top_p": 0.8, "temperature": 0.8, "repetition_penalty": 10.0,
                      "diffusion_steps": 25, "cfg_rate": 0.7, "runs": 1, "warmup": 1},
         "limits": lim, "raw": raw,
         "peer": {"name": "indextts-onnx", "label": "indextts-onnx 0.3.0 (port)", "python": "/p/python", "models": "/m",
                  "onnxruntime": "1.32.0", "graph_precisions": raw["indextts-onnx"]["graph_precisions"]}}
    d["summary"] = report.summarize(raw, lim)
    return d


def test_ratios_against_the_peer_and_the_reference(doc):
    t = doc["summary"]["ort"]["texts"]["en_short"]
    # the peer's time over ours: total 3.5 s (with its 0.5 s of text) against our 4.0 s
    assert t["ratio_vs_peer"]["total"] == pytest.approx(3.5 / 4.0)
    assert t["ratio_vs_peer"]["gpt_generate"] == pytest.approx(0.5) and t["ratio_vs_peer"]["s2mel"] == pytest.approx(1.5)
    assert "text" not in t["ratio_vs_peer"]  # our text stage took no time: no ratio
    assert t["speedup_vs_reference"]["total"] == pytest.approx(7.0 / 4.0)
    u = t["unit_ratio_vs_peer"]
    assert u["gpt_generate_ms_per_code"] == pytest.approx(0.5) and u["dit_ms_per_step"] == pytest.approx(1.0)
    assert u["bigvgan_ms_per_audio_second"] == pytest.approx(0.5)
    assert "ratio_vs_peer" not in doc["summary"]["indextts-onnx"]["texts"]["en_short"]
    assert doc["summary"]["torch"]["texts"]["en_short"]["ratio_vs_peer"]["total"] == pytest.approx(0.5)


def test_markdown_has_the_peer_column_section_and_differences(doc):
    md = report.markdown(doc)
    assert "| en_short | 40 | ONNX Runtime fp32 |" in md and md.count(" vs peer |") == 1
    row = next(line for line in md.splitlines() if line.startswith("| en_short | 40 | ONNX Runtime fp32 |"))
    assert row.endswith("| 1.75× | 0.88× |")
    assert "## Against indextts-onnx 0.3.0 (port)" in md
    assert "| en_short | ONNX Runtime fp32 | – | – | 0.50× | – | – | 1.50× | 0.50× | 0.88× | 0.50× | 1.00× | 1.00× | 0.50× |" in md
    assert "Ours: 3 beams; indextts-onnx 0.3.0 (port): 1 sampled sequence" in md and "`--beams 1`" in md
    assert "int8 gpt2_step; fp32 dit_step" in md and "25 CFM steps" in md
    doc["workload"]["num_beams"] = 1
    assert "1 beam (one sampled sequence) (top-k" in report.markdown(doc) and "Equal work." in report.markdown(doc)


def _cli(*args):
    from typer.testing import CliRunner

    from indextts_trt.export.cli import app

    return CliRunner().invoke(app, ["bench", "--quick", *args])


@pytest.mark.parametrize("extra, message", [
    ([], "--peer indextts-onnx needs --peer-python PATH"),
    (["--peer-python", "/nonexistent/bin/python"], "--peer-python /nonexistent/bin/python: no such interpreter"),
    (["--peer-python", sys.executable], f"--peer-python {sys.executable}: indextts-onnx is not importable there"),
])
def test_peer_errors_are_one_line_and_exit_2(tmp_path, extra, message):
    r = _cli("--peer", "indextts-onnx", *extra, "--out", str(tmp_path))
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1
    assert not list(tmp_path.iterdir())  # checked before any work


def test_unknown_peer_and_incomplete_model_folder(tmp_path):
    r = _cli("--peer", "nope", "--out", str(tmp_path))
    assert r.exit_code == 2 and "--peer 'nope': choose from indextts-onnx" in r.output
    p = peers.PEERS["indextts-onnx"]
    with pytest.raises(peers.PeerError, match="needs --peer-models DIR.*export_all"):
        peers.check_models(p, None, Path("/p/python"))
    with pytest.raises(peers.PeerError, match=r"not indextts-onnx's model folder \(missing wav2vec2bert.onnx, "):
        peers.check_models(p, tmp_path, Path("/p/python"))


def test_a_json_round_trip_keeps_the_new_columns(doc):
    again = json.loads(json.dumps(doc))
    assert report.markdown(again) == report.markdown(doc)


def test_run_as_a_script_the_driver_imports_the_port_not_itself(tmp_path):
    """The driver's file is named like the port's package and its folder leads sys.path when run as
    a script: it must drop that folder, or ``import indextts_onnx.infer`` finds the driver (a real
    failure of the first full-size run). A stand-in package says which one was imported."""
    import subprocess

    pkg = tmp_path / "site" / "indextts_onnx"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "infer.py").write_text("raise SystemExit('the stand-in port was imported')\n")
    models = tmp_path / "models"
    models.mkdir()
    for f in [f"{g}.onnx" for g in drv.GRAPHS] + ["bpe.model"]:
        (models / f).write_bytes(b"x")
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"workload": {}, "peer_models": str(models)}))
    r = subprocess.run([sys.executable, str(DRIVER), str(args), str(tmp_path / "out.json")], capture_output=True,
                       text=True, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 1 and "the stand-in port was imported" in r.stderr, r.stderr


def test_a_report_of_the_peer_alone(doc):
    """The peer's column by itself (how its full-size run was checked): no speedup, no ratio table."""
    doc["raw"] = {"indextts-onnx": doc["raw"]["indextts-onnx"]}
    doc["summary"] = report.summarize(doc["raw"], doc["limits"])
    md = report.markdown(doc)
    assert "No engines of ours." in md and "## Against indextts-onnx 0.3.0 (port)" in md
    row = next(line for line in md.splitlines() if line.startswith("| en_short | 40 | indextts-onnx"))
    assert row.endswith("| 4.38 | – | – |")
    assert "| en_short | ours |" not in md and "| text | ours |" not in md
