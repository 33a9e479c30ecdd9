"""``tts-export bench`` / ``python -m indextts_trt.benchmarks.run``: the latency report.

Runs the fixed work (``workload.py``) on every backend available here, each in its own process,
measures this machine's ceilings, and writes ``NAME.json`` (machine, versions, manifest hash, exact
settings, raw runs, summary), ``NAME.md`` and ``NAME.png`` into the output folder, each atomically.

Full size: give ``--checkpoints`` (e.g. from ``tts-export init-checkpoints --size full``) and an
``--engine-dir`` built from them; missing engines are built first. ``--quick``: tiny random
checkpoints and engines in a temporary folder, short texts, one run; for CI, which checks the
report is produced and well formed, not the timings.

Columns: the PyTorch reference (``--backend torch``), our ONNX Runtime pipeline at each
``--precision`` (``--backend ort --precision fp32 --precision int8``: one column per precision, keyed
``ort`` for fp32 and ``ort-<precision>`` otherwise; missing graphs of a precision are made first), and
a peer (``--peer indextts-onnx --peer-python PATH --peer-models DIR``: the port run by its own
interpreter, ``peers/indextts_onnx.py``). ``--beams 1`` is the equal work to compare with the port's
one sampled sequence.

Reports go to ``out/bench/`` (ignored by git) unless ``--out`` says otherwise; the committed
results are rewritten only when asked: ``--out benchmarks/results``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import typer

from indextts_trt.runtime.files import write_bytes_atomic

from . import limits as limits_mod
from . import peers, report
from .workload import QUICK_TEXTS, Workload

app = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])
BACKENDS = ("torch", "ort")
DEFAULT_OUT = Path("out/bench")  # scratch, ignored by git; benchmarks/results/ only when --out says so


def machine() -> dict:
    from indextts_trt.export.manifest import cpu_info

    cpu = cpu_info()[0]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    from indextts_trt.runtime.gpu import gpu_summary

    gpu = gpu_summary()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem / 2**30, "gpu": gpu,
            "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict:
    import numpy as np

    from indextts_trt.export.manifest import library_versions, tool_version

    return {"indextts-trt": tool_version(), "numpy": np.__version__,
            **{k: v for k, v in library_versions().items() if v and k != "python"}}


def columns(backends: tuple[str, ...], precisions: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(report key, backend, precision) per column: the PyTorch reference is fp32 only; ONNX Runtime
    gets one column per precision, ``ort`` for fp32 (the key reports always had) and ``ort-<p>``."""
    out = []
    for b in backends:
        if b == "ort":
            out += [("ort" if p == "fp32" else f"ort-{p}", "ort", p) for p in dict.fromkeys(precisions)]
        else:
            out.append((b, b, "fp32"))
    return out


def ensure_precision(checkpoints: Path, engine_dir: Path, precision: str, quick: bool, log) -> None:
    """Every stage of ``engine_dir`` has a gated ``precision`` graph (or its recorded fp32 fallback):
    made first when missing, as ``tts-export build --precision`` makes them."""
    manifest = json.loads((Path(engine_dir) / "manifest.json").read_text())
    if precision == "fp32" or all(precision in (st.get("graphs") or {}) for st in manifest["stages"].values()):
        return
    from indextts_trt.export.precision_graphs import make_precision_graphs

    log(f"making the {precision} graphs in {engine_dir}")
    make_precision_graphs(checkpoints, engine_dir, precision, ("opt",), progress=not quick,
                          log_line=(lambda m: None) if quick else log)


def run_worker(backend: str, args: dict, tmp: Path, timeout: float, key: str | None = None) -> dict:
    key = key or backend
    a, o = tmp / f"{key}.args.json", tmp / f"{key}.out.json"
    a.write_text(json.dumps({**args, "backend": backend}))
    env = dict(os.environ)
    threads = args["workload"]["threads"]
    if threads:  # BLAS/OpenMP pools of torch follow too
        env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, "-m", "indextts_trt.benchmarks.worker", str(a), str(o)], env=env,
                       timeout=timeout, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"benchmark worker '{key}' failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(o.read_text())


def bench(checkpoints: Path | None, engine_dir: Path | None, out_dir: Path, name: str, work: Workload,
          backends: tuple[str, ...], quick: bool, log=print, timeout: float = 3600,
          precisions: tuple[str, ...] = ("fp32",), peer: tuple[peers.Peer, Path, Path] | None = None) -> dict:
    """Everything but the CLI: returns the JSON document it wrote. ``peer``: (the peer, its
    interpreter, its model folder), all checked (``peers.check_python``, ``peers.check_models``)."""
    cols = columns(backends, precisions)
    from indextts_trt.runtime.audio import SR_22K, write_wav_int16
    from indextts_trt.runtime.demo_audio import synth_voice_prompt

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_s:
        tmp = Path(tmp_s)
        if checkpoints is None:
            if not quick:
                raise ValueError("--checkpoints is required without --quick")
            from indextts_trt.reference.init_checkpoints import init_checkpoints

            checkpoints = tmp / "ckpt"
            log("writing tiny random-weight checkpoints")
            init_checkpoints("tiny", checkpoints, seed=0, progress=False)
        size = "tiny" if quick else _size_of(checkpoints)
        built_here = engine_dir is None
        if built_here:
            engine_dir = tmp / "engines"
        if peer is not None:
            _check_peer_variant(checkpoints)
        if "ort" in backends and not (Path(engine_dir) / "manifest.json").is_file():
            from indextts_trt.export.build import build

            log(f"building ONNX graphs into {engine_dir}")
            if not build(checkpoints, engine_dir, points=("opt",), progress=not quick).ok:
                raise RuntimeError("the export's parity gate failed; no benchmark of unverified graphs")
        for _, b, p in cols:
            if b == "ort":
                ensure_precision(checkpoints, engine_dir, p, quick, log)
        prompt = tmp / "prompt.wav"
        write_wav_int16(prompt, synth_voice_prompt(work.prompt_seconds, SR_22K, seed=work.prompt_seed), SR_22K)
        work = replace(work, extra={**work.extra, "prompt_path": str(prompt)})
        log(f"measuring this machine's limits ({work.threads or os.cpu_count()} threads)")
        lim = limits_mod.measure(work.threads, quick=quick)
        raw = {}
        for key, b, p in cols:
            log(f"running {key} ({len(work.texts)} texts × {work.runs} runs + {work.warmup} warm-up)")
            t0 = time.perf_counter()
            raw[key] = run_worker(b, {"workload": work.to_json(), "checkpoints": str(checkpoints),
                                      "engine_dir": str(engine_dir), "precision": p}, tmp, timeout, key)
            log(f"  {key}: {time.perf_counter() - t0:.0f} s")
        if peer is not None:
            log(f"running peer {peer[0].name} ({peer[1]})")
            t0 = time.perf_counter()
            raw[peer[0].name] = peers.run(*peer, work.to_json(), tmp, timeout)
            log(f"  {peer[0].name}: {time.perf_counter() - t0:.0f} s")
        # read while a temporary engines folder still exists
        manifest = Path(engine_dir) / "manifest.json"
        manifest_sha = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else ""
    ort_keys = [k for k, b, _ in cols if b == "ort"]
    engines_where = ("tiny engines built in a temporary folder (deleted after the run)" if built_here
                     else str(Path(engine_dir).resolve()))
    doc = {
        "schema": 1, "title": f"{name} ({size} random-weight checkpoints)",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(), "versions": versions(),
        "checkpoints_size": size,
        "checkpoints_note": "random weights in the released formats; codes forced to a fixed count",
        "engine_dir": engines_where if ort_keys else "",
        "manifest_sha256": manifest_sha,
        "workload": {k: v for k, v in work.to_json().items() if k != "extra"},
        "limits": lim, "backends": list(raw), "raw": raw,
        "columns": {k: {"backend": b, "precision": p} for k, b, p in cols},
        "caveats": ["ONNX Runtime runs its CPU provider here, not TensorRT and not a GPU."
                    if ort_keys and "CUDA" not in str(raw[ort_keys[0]].get("providers", "")) else "",
                    "Time to first audio is measured with code-chunk streaming on the longest text; per-segment "
                    "streaming's first audio is that of a whole segment (the texts are one segment each)."],
    }
    if peer is not None:
        res = raw[peer[0].name]
        doc["peer"] = {"name": peer[0].name, "label": peer[0].label, "version": res.get("peer_version"),
                       "python": str(peer[1]), "models": str(peer[2]), "num_beams": res.get("num_beams", 1),
                       "graph_precisions": res.get("graph_precisions", {}), "onnxruntime": res.get("onnxruntime")}
        doc["columns"][peer[0].name] = {"backend": "peer", "precision": "int8/fp32 (its own choice)"}
    doc["versions"] = {k: v for k, v in doc["versions"].items() if v}
    doc["caveats"] = [c for c in doc["caveats"] if c]
    doc["summary"] = report.summarize(raw, lim)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    with tempfile.TemporaryDirectory() as t:
        if report.plot(doc, Path(t) / "p.png"):
            write_bytes_atomic(png, (Path(t) / "p.png").read_bytes())
            doc["plot"] = png.name
    write_bytes_atomic(out_dir / f"{name}.json", json.dumps(doc, indent=1).encode())
    write_bytes_atomic(out_dir / f"{name}.md", report.markdown(doc).encode())
    return doc


def _check_peer_variant(checkpoints: Path) -> None:
    from indextts_trt.runtime.variant import load_variant_config

    variant, _ = load_variant_config(Path(checkpoints))
    if variant.name != "indextts-2":
        raise ValueError(f"--peer runs IndexTTS-2 ports; {checkpoints} holds {variant.name} checkpoints")


def _size_of(checkpoints: Path) -> str:
    from indextts_trt.runtime.variant import load_variant_config

    try:
        variant, cfg = load_variant_config(Path(checkpoints))
        return "full" if cfg == variant.parse_config(variant.config_dict("full"), "<full>")[0] else "custom"
    except Exception:  # noqa: BLE001 - a label only; loading errors surface in the workers
        return "custom"


@app.command()
def main(
    checkpoints: Path | None = typer.Option(None, "--checkpoints", help="checkpoint directory, needed without "
                                            "--quick (full size: `tts-export init-checkpoints --size full`; "
                                            "default with --quick: tiny random ones in a temporary folder)"),
    engine_dir: Path | None = typer.Option(None, "--engine-dir", help="ONNX engines built from --checkpoints "
                                           "(built there first when missing; default: built in a temporary "
                                           "folder)"),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="report folder (the committed results: "
                             "benchmarks/results)"),
    name: str | None = typer.Option(None, "--name", help="report file stem (default: cpu-full / cpu-quick, gpu-… "
                                    "with a GPU)"),
    backend: list[str] = typer.Option(list(BACKENDS), "--backend", metavar="<name>",
                                      help="torch (PyTorch reference) and/or ort; "
                                      "repeatable"),
    runs: int = typer.Option(None, "--runs", show_default=False, help="measured runs per text, >= 1 (default 2; 1 "
                             "with --quick)"),
    warmup: int = typer.Option(1, "--warmup", help="warm-up runs of the first text before measuring, >= 0 "
                               "(discarded)"),
    threads: int = typer.Option(0, "--threads", help="threads for every backend, >= 0 (0: all cores)"),
    quick: bool = typer.Option(False, "--quick", help="tiny random checkpoints and engines in a temporary folder, "
                               "short texts, one run (CI: checks the report, not the timings)"),
    precision: list[str] = typer.Option(["fp32"], "--precision", metavar="<p>",
                                        help="ONNX Runtime graphs' precision, repeatable: one ort column each "
                                        "(missing graphs are made first, as `tts-export build --precision`)"),
    beams: int = typer.Option(Workload.num_beams, "--beams", help="GPT beams, >= 1 (1: the equal work to compare "
                              "with a one-sequence peer)"),
    peer: str | None = typer.Option(None, "--peer", help=f"also run a peer on the same work: {', '.join(peers.PEERS)} (default: none)"),
    peer_python: Path | None = typer.Option(None, "--peer-python", help="the interpreter of the peer's own "
                                            "environment (never the project's venv; default: none, needed with --peer)"),
    peer_models: Path | None = typer.Option(None, "--peer-models", help="the peer's model folder, converted from "
                                            "--checkpoints by the peer's own exporter (default: none, needed with --peer)"),
    texts: str | None = typer.Option(None, "--texts", metavar="<names>", help="only these texts of the fixed work, "
                                     "comma-separated (default: all; e.g. en_short,en_long)"),
) -> None:
    """Run the fixed work on each backend and write NAME.json, NAME.md and NAME.png."""
    from indextts_trt.runtime.pipeline import PRECISIONS

    bad = [b for b in backend if b not in BACKENDS]
    if bad:
        raise typer.BadParameter(f"--backend {bad[0]!r}: choose from {', '.join(BACKENDS)}")
    bad = [p for p in precision if p not in PRECISIONS]
    if bad:
        raise typer.BadParameter(f"--precision {bad[0]!r}: choose from {', '.join(PRECISIONS)}")
    if beams < 1:
        raise typer.BadParameter(f"--beams {beams}: must be >= 1")
    try:
        peer_run = None
        if peer is not None:
            p = peers.get(peer)
            peers.check_python(p, peer_python)
            peer_run = (p, peer_python, peers.check_models(p, peer_models, peer_python))
    except peers.PeerError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    work = Workload(runs=runs or (1 if quick else 2), warmup=warmup, threads=threads, num_beams=beams)
    if quick:
        work = replace(work, texts=QUICK_TEXTS, diffusion_steps=4, stream_chunk=(8, 2))
    if texts is not None:
        names = [t.strip() for t in texts.split(",") if t.strip()]
        known = {t.name: t for t in work.texts}
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise typer.BadParameter(f"--texts {texts!r}: choose from {', '.join(known)}")
        work = replace(work, texts=tuple(known[n] for n in names))
    name = name or f"{'gpu' if machine()['gpu'] else 'cpu'}-{'quick' if quick else 'full'}"
    try:
        doc = bench(checkpoints, engine_dir, out, name, work, tuple(backend), quick,
                    log=lambda m: typer.echo(m, err=True), precisions=tuple(precision), peer=peer_run)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out / name}.json, .md" + (", .png" if doc.get("plot") else " (no matplotlib: no plot)"))


if __name__ == "__main__":
    app()
