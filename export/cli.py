"""``tts-export``: checkpoints, graphs and engines.

Sub-commands land issue by issue; each one that exists works end to end.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Export IndexTTS2 stage by stage to ONNX / TensorRT.")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@app.command("init-checkpoints")
def init_checkpoints_cmd(
    size: str = typer.Option("tiny", "--size", help="tiny (odd small test sizes) or full (the released configuration)"),
    out: Path = typer.Option(Path("checkpoints"), "--out", help="checkpoint directory to write"),
    seed: int = typer.Option(0, "--seed", help="seed of the random weights"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing non-empty directory"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write random-weight checkpoints in exactly the released IndexTTS-2 file formats and key names."""
    _setup_logging(verbose)
    from indextts_trt.reference.init_checkpoints import init_checkpoints

    if size not in ("tiny", "full"):
        raise typer.BadParameter(f"--size must be 'tiny' or 'full', got {size!r}")
    try:
        rep = init_checkpoints(size, out, seed=seed, overwrite=overwrite)
    except FileExistsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    for name, s in rep.seconds.items():
        typer.echo(f"  {name:<28s} {s:8.2f} s")
    typer.echo(f"wrote {rep.out} ({rep.total_bytes / 2**20:.1f} MiB) in {sum(rep.seconds.values()):.1f} s, "
               f"peak RSS {rep.peak_rss_mb:.0f} MiB")


@app.command("env")
def env_cmd() -> None:
    """Print library versions and whether TensorRT and a GPU are usable."""
    from indextts_trt.export.environment import collect_env

    for k, v in collect_env().items():
        typer.echo(f"{k:<24s} {v}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
