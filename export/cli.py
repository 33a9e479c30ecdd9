"""``tts-export``: checkpoints, graphs and engines.

Sub-commands land issue by issue; each one that exists works end to end. Errors are one line with
exit code 2 (usage) or 1 (data: checkpoints, engines directory, disk), never a traceback unless
``tts-export --debug ...`` (``runtime/cli_errors.py``); 3: the graphs are built but TensorRT is
not usable here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from indextts_trt.runtime.cli_errors import EXIT_CODES_HELP, cli_errors, setup_logging

# plain help (no rich panels): flags show no "<bool>" metavar, every line is text a user can copy
app = typer.Typer(add_completion=False, no_args_is_help=True, epilog=EXIT_CODES_HELP + " 3: no TensorRT here.",
                  rich_markup_mode=None, help="Export IndexTTS2 stage by stage to ONNX / TensorRT.")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
NO_TRT = {"int8": "int8 graphs run on ONNX Runtime only: TensorRT's int8 needs Q/DQ calibration, which this build "
                  "does not do"}
# option field -> flag, so an OptionError names what the user typed
FLAGS = {"stages": "--stage", "points": "--points", "precision": "--precision", "size": "--size",
         "variant": "--variant", "int8_pick": "--int8-pick"}
_STATE = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="print the traceback of an error too "
                                        "(before the command: tts-export --debug build ...)")) -> None:
    _STATE["debug"] = debug


def _errors():
    return cli_errors(_STATE["debug"], FLAGS)


def _setup_logging(verbose: bool) -> None:
    setup_logging(verbose, ("onnx_ir", "onnxscript", "torch.onnx", "torch._dynamo", "torch.export"))


VERBOSE_HELP = "debug log lines too (the exporters' and libraries' messages)"


def _checkpoints(given: Path | None) -> Path:
    from indextts_trt.runtime.workdirs import checkpoints_with_config

    return checkpoints_with_config(given)


def _engines(given: Path | None) -> Path:
    from indextts_trt.runtime.workdirs import engine_dir_or_default

    return engine_dir_or_default(given)


CKPT_HELP = "checkpoint directory (default: checkpoints/, or the one checkpoint folder below it, e.g. checkpoints/tiny)"
OUT_HELP = "output directory for graphs and manifest (default: engines/NAME for checkpoints/NAME, else engines/)"
ENGINES_HELP = "engines directory (default: engines/, or the one build below it, e.g. the demo's engines/tiny)"


@app.command("init-checkpoints")
def init_checkpoints_cmd(
    size: str = typer.Option("tiny", "--size", help="tiny (odd small test sizes, 2.7 MiB) or full (the released "
                             "configuration, 6.6 GiB)"),
    out: Path | None = typer.Option(None, "--out", show_default=False, help="checkpoint directory to write, new or "
                                    "empty (default: checkpoints/SIZE, which build then finds by itself)"),
    variant: str = typer.Option("indextts-2", "--variant", help="model variant whose released formats to write"),
    seed: int = typer.Option(0, "--seed", help="seed of the random weights, >= 0"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing non-empty directory"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Write random-weight checkpoints in exactly the released file formats and key names."""
    _setup_logging(verbose)
    from indextts_trt.export.variant import export_variant
    from indextts_trt.runtime.errors import OptionError

    with _errors():
        if size not in ("tiny", "full"):
            raise OptionError("size", size, "use tiny or full")
        out = out if out is not None else Path("checkpoints") / size
        ev = export_variant(variant)
        rep = ev.init_checkpoints(size, out, seed=seed, overwrite=overwrite)
    for name, s in rep.seconds.items():
        typer.echo(f"  {name:<28s} {s:8.2f} s")
    typer.echo(f"wrote {rep.out} ({rep.total_bytes / 2**20:.1f} MiB) in {sum(rep.seconds.values()):.1f} s, "
               f"peak RSS {rep.peak_rss_mb:.0f} MiB")


@app.command("build")
def build_cmd(
    checkpoints: Path | None = typer.Option(None, "--checkpoints", show_default=False, help=CKPT_HELP),
    out: Path | None = typer.Option(None, "--out", show_default=False, help=OUT_HELP),
    stage: list[str] = typer.Option(None, "--stage", show_default=False, metavar="<name>",
                                    help="build only this stage (repeatable; default: all 12)"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16 | bf16 | int8: fp16/bf16 also writes "
                                  "each stage's mixed-precision graph (fp32 islands where parity needs them; fp16 "
                                  "gated under ONNX Runtime), which the engines are built from; int8 each stage's "
                                  "int8-weight graph for ONNX Runtime's CPU provider (gated; no TensorRT step)"),
    tf32: bool = typer.Option(False, "--tf32", help="let TensorRT use TF32 in fp32 layers (judged at the fp16 "
                              "tolerances; default off: fp32 means fp32)"),
    force: bool = typer.Option(False, "--force", help="rebuild even when the cache key matches"),
    points: str = typer.Option("opt,min,awkward,max", "--points",
                               help="parity shapes, comma-separated, of opt (the export shape), min, awkward (an odd "
                               "size) and max; each point is one more parity run per stage"),
    trt: bool = typer.Option(None, "--trt/--no-trt", show_default=False, help="also plan and build TensorRT "
                             "engines (default: on for fp16/bf16, off for fp32)"),
    int8_pick: str = typer.Option("fastest", "--int8-pick", help="int8: which passing graph a stage keeps: fastest "
                                  "(each scheme's, and fp32's, timed on this machine; the choice follows the CPU) "
                                  "or first (the ladder's first pass: the same on every machine)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Export every stage to ONNX and gate it on parity with the PyTorch reference; then (--trt) the
    precision analysis, the TensorRT build plan, the engines and their parity with ONNX Runtime."""
    _setup_logging(verbose)
    from indextts_trt.export.build import build, failure_table
    from indextts_trt.runtime.errors import OptionError
    from indextts_trt.runtime.workdirs import engines_for

    with _errors():
        if precision not in PRECISIONS:
            raise OptionError("precision", precision, f"use one of {', '.join(PRECISIONS)}")
        if precision in NO_TRT and (trt or tf32):
            raise OptionError("precision", precision, NO_TRT[precision] + ": drop --trt/--tf32")
        from indextts_trt.export.int8_pick import PICKS

        if int8_pick not in PICKS:
            raise OptionError("int8_pick", int8_pick, f"use one of {', '.join(PICKS)}")
        checkpoints = _checkpoints(checkpoints)
        out = out if out is not None else engines_for(checkpoints)
        typer.echo(f"{checkpoints} -> {out}", err=True)
        rep = build(checkpoints, out, stages=stage or None, force=force,
                    points=tuple(p.strip() for p in points.split(",") if p.strip()))
    for name in rep.built:
        typer.echo(f"  built   {name:<22s} {rep.seconds[name]:7.1f} s")
    for name in rep.rejudged:
        typer.echo(f"  checked {name:<22s} {rep.seconds[name]:7.1f} s (graph unchanged, parity run again)")
    for name in rep.skipped:
        typer.echo(f"  cached  {name}")
    n_ok = sum(c.passed for c in rep.checks)
    typer.echo(f"parity: {n_ok}/{len(rep.checks)} checks passed; report: {out / 'parity_report.md'}")
    if not rep.ok:
        typer.echo("PARITY FAILED — these stages were not written:\n" + failure_table(rep.checks), err=True)
        raise typer.Exit(1)
    pts = tuple(p.strip() for p in points.split(",") if p.strip())
    if precision != "fp32":
        with _errors():
            _precision_graphs(checkpoints, out, precision, pts, force, int8_pick)
    if trt is None:
        trt = precision in ("fp16", "bf16") or tf32
    if not trt:
        return
    from indextts_trt.export.engines import build_and_check
    from indextts_trt.runtime.gpu import TensorRTUnavailable, gpu_info, import_tensorrt

    with _errors():
        plan = _plan(out, precision, tf32)
    try:
        import_tensorrt()
        gpu_info()
    except TensorRTUnavailable as e:
        graphs = "fp32" if precision == "fp32" else f"fp32 and {precision}"
        run = f"tts-run --engine-dir {out} --backend ort" + (f" --precision {precision}" if precision == "fp16" else "")
        typer.echo(f"NO TensorRT ENGINE WAS BUILT: {e}.\n"
                   f"The {graphs} ONNX graphs (verified against PyTorch) and the full {precision} build plan are in "
                   f"{out}; ONNX Runtime runs them (`{run}`). To build the engines, "
                   f"install the trt extra on a machine with an NVIDIA GPU and rerun this command.", err=True)
        raise typer.Exit(3) from None
    with _errors():
        try:
            built = build_and_check(out, plan, stage or None, force, log=typer.echo)
        except RuntimeError as e:  # a TensorRT build or parity failure (named in the message)
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"TensorRT: built {len(built)} engine(s), each within {precision} tolerance of ONNX Runtime")


@app.command("plan")
def plan_cmd(
    checkpoints: Path | None = typer.Option(None, "--checkpoints", show_default=False, help="checkpoint directory "
                                            "the graphs were built from (the fp16/bf16 graphs are judged against "
                                            "its PyTorch reference; default: as for build)"),
    out: Path | None = typer.Option(None, "--out", show_default=False, help="engines directory with the ONNX graphs "
                                    "(default: as for build)"),
    precision: str = typer.Option("fp16", "--precision", help="fp32 | fp16 | bf16: the engines' precision the "
                                  "plan is for"),
    tf32: bool = typer.Option(False, "--tf32", help="let TensorRT use TF32 in fp32 layers"),
    points: str = typer.Option("opt,min,awkward,max", "--points", help="parity shapes of the fp16 graphs"),
) -> None:
    """The mixed-precision graphs (made if missing) and the TensorRT build plan for existing graphs,
    without building any engine (what `build --precision fp16` does before it needs TensorRT)."""
    from indextts_trt.runtime.errors import OptionError
    from indextts_trt.runtime.workdirs import engines_for

    with _errors():
        if precision not in PRECISIONS or precision in NO_TRT:
            raise OptionError("precision", precision, NO_TRT.get(precision, f"use one of {', '.join(PRECISIONS)}"))
        checkpoints = _checkpoints(checkpoints)
        out = out if out is not None else engines_for(checkpoints)
        if precision != "fp32":
            _precision_graphs(checkpoints, out, precision, tuple(p.strip() for p in points.split(",") if p.strip()),
                              False)
        _plan(out, precision, tf32)


def _precision_graphs(checkpoints: Path, out: Path, precision: str, points: tuple[str, ...], force: bool,
                      int8_pick: str = "fastest") -> None:
    from indextts_trt.export.precision_graphs import make_precision_graphs

    res = make_precision_graphs(checkpoints, out, precision, points, force=force, progress=True, log_line=typer.echo,
                                int8_pick=int8_pick)
    kept = [r.stage for r in res if r.precision == "fp32" and r.note.startswith("not quantized")]
    faster = [r.stage for r in res if r.precision == "fp32" and r.note.startswith("fp32 is faster")]
    fallback = [r.stage for r in res if r.precision == "fp32" and r.stage not in kept + faster]
    typer.echo(f"{precision} graphs: {len(res) - len(fallback) - len(kept) - len(faster)} of {len(res)} stages in "
               f"{precision}"
               + (f"; fp32 (no island set passes): {', '.join(fallback)}" if fallback else "")
               + (f"; fp32 (faster on this CPU): {', '.join(faster)}" if faster else "")
               + (f"; fp32 (not quantized): {', '.join(kept)}" if kept else "")
               + f"; report: {out / f'precision_{precision}_report.md'}")
    if precision in NO_TRT:
        typer.echo(f"run them: tts-run --engine-dir {out} --backend ort --precision {precision}")


def _plan(out: Path, precision: str, tf32: bool) -> dict:
    from indextts_trt.export.engines import plan_engines
    from indextts_trt.runtime.errors import UserError

    try:
        return plan_engines(out, precision, tf32=tf32, log=typer.echo)
    except ValueError as e:  # the plan's own errors (no graph, islands that match no node): the directory's
        if isinstance(e, UserError):
            raise
        raise UserError(f"build plan: {e}") from None


@app.command("check")
def check_cmd(engine_dir: Path | None = typer.Argument(None, show_default=False, help=ENGINES_HELP),
              verbose: bool = typer.Option(False, "--verbose", "-v", help="name the operator table's source in "
                                           "full and list every graph that passes")) -> None:
    """Check every graph against the TensorRT 10 ONNX parser's operator matrix (after checking
    every graph file against the manifest's sizes and hashes)."""
    from indextts_trt.export.trt_check import check_engine_dir, trt_table
    from indextts_trt.runtime.manifest import load_manifest, verify_files

    with _errors():
        engine_dir = _engines(engine_dir)
        for st in load_manifest(engine_dir)["stages"].values():
            verify_files(engine_dir, st["files"], st.get("sizes"))
        results = check_engine_dir(engine_dir)
    source = trt_table()["source"]
    typer.echo(f"operator table: {source if verbose else source.split(' (')[0]}")
    bad = 0
    for name, findings in results.items():
        if not findings:
            if verbose:
                typer.echo(f"  ok    {name}")
            continue
        bad += 1
        typer.echo(f"  FAIL  {name}")
        for f in findings:
            typer.echo(f"        {f.node} ({f.op}): {f.problem}\n          workaround: {f.workaround}")
    if bad:
        raise typer.Exit(1)
    typer.echo(f"{engine_dir}: all {len(results)} graphs are parseable by TensorRT 10 according to the table")


@app.command("inspect")
def inspect_cmd(engine_dir: Path | None = typer.Argument(None, show_default=False, help=ENGINES_HELP)) -> None:
    """Print the manifest: versions, stages, dimension ranges, parity."""
    from indextts_trt.runtime.manifest import load_manifest

    with _errors():
        m = load_manifest(_engines(engine_dir))
    typer.echo(f"schema {m['schema_version']}  tool {m.get('tool', {}).get('version')}  " +
               "  ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    typer.echo(f"variant {m['variant']}  checkpoints: {m.get('checkpoints', {}).get('path')}")
    for name, st in m["stages"].items():
        dims = ", ".join(f"{k} {v.get('min')}..{v.get('opt')}..{v.get('max')}" if isinstance(v, dict) else f"{k} ?"
                         for k, v in st.get("dims", {}).items())
        checks = [c for c in st["parity"].get("checks") or [] if isinstance(c, dict)]
        ok = sum(bool(c.get("passed")) for c in checks)
        typer.echo(f"  {name:<22s} {str(st.get('precision')):<5s} parity {ok}/{len(checks)}  {dims}")


@app.command("env")
def env_cmd() -> None:
    """Print library versions and whether TensorRT and a GPU are usable."""
    from indextts_trt.export.environment import collect_env

    for k, v in collect_env().items():
        typer.echo(f"{k:<24s} {v}")


def _register_bench() -> None:
    from indextts_trt.benchmarks.run import main as bench_main  # light: typer + the benchmark package

    app.command("bench", help="Latency report: the fixed work on every backend here (see benchmarks/).")(bench_main)


_register_bench()


# ----------------------------------------------------------- released checkpoints (issue 14)


@app.command("download")
def download_cmd(
    out: Path = typer.Option(Path("checkpoints"), "--out", help="checkpoint directory to write (released layout)"),
    model: str = typer.Option("IndexTeam/IndexTTS-2", "--model", help="model repository"),
    revision: str = typer.Option(None, "--revision", show_default=False, help="branch, tag or commit of the model "
                                  "repository (default: main)"),
    source: str = typer.Option("hf", "--source", help="hf (mirrors: HF_ENDPOINT) | modelscope"),
    token: str = typer.Option(None, "--token", help="hub token for gated repositories (default: HF_TOKEN / login)"),
) -> None:
    """Download the released checkpoints from their five hub repositories (resumable), verify and lock them."""
    from indextts_trt.export.download import DownloadError, download

    try:
        rep = download(out, model=model, revision=revision, source=source, token=token, log=typer.echo)
    except DownloadError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    for g in rep.files:
        if g.how != "downloaded":  # downloads were listed as they finished
            typer.echo(f"  {g.wanted.target:<50s} {g.how}")
    state = "up to date (run `tts-export verify` to re-check the contents)" if rep.up_to_date else \
        f"verified, lock {rep.verify.lock}"
    typer.echo(f"{out}: {len(rep.files)} files, {rep.fetched_bytes / 2**20:.1f} MiB downloaded in "
               f"{rep.seconds:.1f} s; {state}")


@app.command("verify")
def verify_cmd(
    checkpoints: Path | None = typer.Argument(None, show_default=False, help=CKPT_HELP),
    update_lock: bool = typer.Option(False, "--update-lock", help="accept the current contents into the lock"),
) -> None:
    """Check every checkpoint file: present, readable without running code, keys and shapes, sha256 lock."""
    from indextts_trt.export.verify import LOCK_NAME, verify
    from indextts_trt.runtime.workdirs import checkpoints_or_default

    with _errors():
        checkpoints = checkpoints_or_default(checkpoints)

    rep = verify(checkpoints, update_lock=update_lock)
    for line in rep.lines():
        typer.echo(line)
    if not rep.ok:
        typer.echo(f"error: {len(rep.bad)} bad file(s) in {checkpoints}: " + ", ".join(f.rel for f in rep.bad), err=True)
        raise typer.Exit(1)
    typer.echo(f"{checkpoints}: all {len(rep.files)} files ok in {rep.seconds:.1f} s; {LOCK_NAME} {rep.lock}")


@app.command("convert")
def convert_cmd(
    checkpoints: Path | None = typer.Argument(None, show_default=False, help=CKPT_HELP),
    to: str = typer.Option("safetensors", "--to", help="target format (safetensors)"),
) -> None:
    """Write a .safetensors twin beside every pickle; the loaders then read no pickle."""
    from indextts_trt.export.convert import ConvertError, convert
    from indextts_trt.reference.checkpoint_io import CheckpointError
    from indextts_trt.runtime.config import ConfigError
    from indextts_trt.runtime.workdirs import checkpoints_or_default

    with _errors():
        checkpoints = checkpoints_or_default(checkpoints)

    try:
        done = convert(checkpoints, to, log=typer.echo)
    except (ConvertError, CheckpointError, ConfigError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{checkpoints}: {len(done)} safetensors twins written, each bit-identical to its pickle")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
