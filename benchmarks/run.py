"""``tts-export bench`` / ``python -m indextts_trt.benchmarks.run``: the latency report.

Runs the fixed work (``workload.py``) on every backend available here, each in its own process,
measures this machine's ceilings, and writes ``NAME.json`` (machine, versions, manifest hash, exact
settings, raw runs, summary), ``NAME.md`` and ``NAME.png`` into the output folder, each atomically.

Full size: give ``--checkpoints`` (e.g. from ``tts-export init-checkpoints --size full``) and an
``--engine-dir`` built from them; missing engines are built first. ``--quick``: tiny random
checkpoints and engines in a temporary folder, short texts, one run; for CI, which checks the
report is produced and well formed, not the timings.

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
from . import report
from .workload import QUICK_TEXTS, Workload

app = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])
BACKENDS = ("torch", "ort")
DEFAULT_OUT = Path("out/bench")  # scratch, ignored by git; benchmarks/results/ only when --out says so


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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


def run_worker(backend: str, args: dict, tmp: Path, timeout: float) -> dict:
    a, o = tmp / f"{backend}.args.json", tmp / f"{backend}.out.json"
    a.write_text(json.dumps({**args, "backend": backend}))
    env = dict(os.environ)
    threads = args["workload"]["threads"]
    if threads:  # BLAS/OpenMP pools of torch follow too
        env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, "-m", "indextts_trt.benchmarks.worker", str(a), str(o)], env=env,
                       timeout=timeout, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"benchmark worker '{backend}' failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(o.read_text())


def bench(checkpoints: Path | None, engine_dir: Path | None, out_dir: Path, name: str, work: Workload,
          backends: tuple[str, ...], quick: bool, log=print, timeout: float = 3600) -> dict:
    """Everything but the CLI: returns the JSON document it wrote."""
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
        if "ort" in backends and not (Path(engine_dir) / "manifest.json").is_file():
            from indextts_trt.export.build import build

            log(f"building ONNX graphs into {engine_dir}")
            if not build(checkpoints, engine_dir, points=("opt",), progress=not quick).ok:
                raise RuntimeError("the export's parity gate failed; no benchmark of unverified graphs")
        prompt = tmp / "prompt.wav"
        write_wav_int16(prompt, synth_voice_prompt(work.prompt_seconds, SR_22K, seed=work.prompt_seed), SR_22K)
        work = replace(work, extra={**work.extra, "prompt_path": str(prompt)})
        log(f"measuring this machine's limits ({work.threads or os.cpu_count()} threads)")
        lim = limits_mod.measure(work.threads, quick=quick)
        raw = {}
        for b in backends:
            log(f"running backend {b} ({len(work.texts)} texts × {work.runs} runs + {work.warmup} warm-up)")
            t0 = time.perf_counter()
            raw[b] = run_worker(b, {"workload": work.to_json(), "checkpoints": str(checkpoints),
                                    "engine_dir": str(engine_dir)}, tmp, timeout)
            log(f"  {b}: {time.perf_counter() - t0:.0f} s")
        # read while a temporary engines folder still exists
        manifest = Path(engine_dir) / "manifest.json"
        manifest_sha = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else ""
    engines_where = ("tiny engines built in a temporary folder (deleted after the run)" if built_here
                     else str(Path(engine_dir).resolve()))
    doc = {
        "schema": 1, "title": f"{name} ({size} random-weight checkpoints)",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(), "versions": versions(),
        "checkpoints_size": size,
        "checkpoints_note": "random weights in the released formats; codes forced to a fixed count",
        "engine_dir": engines_where if "ort" in backends else "",
        "manifest_sha256": manifest_sha,
        "workload": {k: v for k, v in work.to_json().items() if k != "extra"},
        "limits": lim, "backends": list(backends), "raw": raw,
        "caveats": ["ONNX Runtime runs its CPU provider here, not TensorRT and not a GPU."
                    if "ort" in raw and "CUDA" not in str(raw["ort"].get("providers", "")) else "",
                    "Time to first audio is measured with code-chunk streaming on the longest text; per-segment "
                    "streaming's first audio is that of a whole segment (the texts are one segment each)."],
    }
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
) -> None:
    """Run the fixed work on each backend and write NAME.json, NAME.md and NAME.png."""
    bad = [b for b in backend if b not in BACKENDS]
    if bad:
        raise typer.BadParameter(f"--backend {bad[0]!r}: choose from {', '.join(BACKENDS)}")
    work = Workload(runs=runs or (1 if quick else 2), warmup=warmup, threads=threads)
    if quick:
        work = replace(work, texts=QUICK_TEXTS, diffusion_steps=4, stream_chunk=(8, 2))
    name = name or f"{'gpu' if machine()['gpu'] else 'cpu'}-{'quick' if quick else 'full'}"
    try:
        doc = bench(checkpoints, engine_dir, out, name, work, tuple(backend), quick, log=lambda m: typer.echo(m, err=True))
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out / name}.json, .md" + (", .png" if doc.get("plot") else " (no matplotlib: no plot)"))


if __name__ == "__main__":
    app()
