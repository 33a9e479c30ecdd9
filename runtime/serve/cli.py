"""``tts-serve``: the OpenAI-compatible speech server on Ray Serve.

Starts a local Ray instance (or joins a cluster with ``--ray-address``), deploys the speech
service (``ray_app.py``) behind Ray's HTTP proxy, waits until the engines are loaded and warm,
then serves until SIGINT/SIGTERM, when it stops the deployment and the Ray processes it started
and exits 0. The engines directory is checked before Ray starts, so a wrong path is one line and
exit 1, not a minute of start-up. Needs the ``serve`` extra (``pip install 'indextts-trt[serve]'``).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import typer

from ..cli_errors import EXIT_CODES_HELP, cli_errors
from ..errors import OptionError, UserError
from ..pipeline import MAX_THREADS, check_open_options

app = typer.Typer(add_completion=False, help="Serve IndexTTS2 speech over HTTP (OpenAI /v1/audio/speech).")
log = logging.getLogger("indextts_trt.tts-serve")
FLAGS = {"max_active": "--max-active", "max_queue": "--max-queue", "threads": "--threads", "backend": "--backend",
         "port": "--port", "replicas": "--replicas", "gpus_per_replica": "--gpus-per-replica",
         "max_input_chars": "--max-input-chars", "max_upload_mb": "--max-upload-mb"}


class ServeError(UserError):
    """The server cannot start (its engines failed to load, Ray is missing)."""


def _import_ray():
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ServeError("tts-serve needs Ray Serve: pip install 'indextts-trt[serve]'") from None
    return ray, serve


@app.command(epilog=EXIT_CODES_HELP)
def run(
    engine_dir: Path = typer.Option(Path("engines"), "--engine-dir", help="engines directory (as tts-run)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", help="HTTP port"),
    voices_dir: Path | None = typer.Option(None, "--voices-dir", help="saved voices (default: ENGINE_DIR/voices)"),
    backend: str = typer.Option("auto", "--backend", help="auto, trt or ort (as tts-run)"),
    threads: int = typer.Option(0, "--threads", help=f"ONNX Runtime intra-op threads per replica, in [0, "
                                f"{MAX_THREADS}] (0: all cores)"),
    max_active: int | None = typer.Option(None, "--max-active", help="requests batched together per replica "
                                          "(default and maximum: the DiT step's batch range, 8)"),
    max_queue: int = typer.Option(16, "--max-queue", help="requests waiting beyond those; one more gets 429 at once"),
    max_input_chars: int = typer.Option(4096, "--max-input-chars", help="longest `input` text (OpenAI's limit)"),
    max_upload_mb: float = typer.Option(16.0, "--max-upload-mb", help="largest uploaded audio (voice, emotion)"),
    model_name: list[str] = typer.Option([], "--model-name", help="model name(s) clients send (default: the "
                                         "variant's, e.g. indextts-2)"),
    replicas: int = typer.Option(1, "--replicas", help="replicas, each with its own pipeline and batch"),
    gpus_per_replica: float = typer.Option(0.0, "--gpus-per-replica", help="GPUs Ray reserves for each replica (1: "
                                           "one replica per GPU of the cluster; 0: none, CPU or a single GPU)"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="join this Ray cluster instead of starting "
                                           "a local one (e.g. auto, or ray://head:10001)"),
    no_warmup: bool = typer.Option(False, "--no-warmup", help="skip the warm-up request before ready"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    debug: bool = typer.Option(False, "--debug", help="print the traceback of an error too"),
) -> None:
    """Serve POST /v1/audio/speech, /v1/voices, /health, /ready and /metrics."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with cli_errors(debug, FLAGS):
        cfg = _config(**locals())
        ray, serve = _import_ray()
        stop = threading.Event()
        t0 = time.perf_counter()
        ray.init(address=ray_address, include_dashboard=False, logging_level=logging.WARNING,
                 **({} if ray_address else {"object_store_memory": 100 << 20}))
        # after ray.init: Ray's core worker installs a SIGTERM handler that aborts the driver
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            from .ray_app import bind

            from ray.serve.schema import LoggingConfig

            quiet = LoggingConfig(log_level="INFO" if verbose else "WARNING", enable_access_log=verbose)
            serve.start(http_options={"host": host, "port": port}, logging_config=quiet)
            serve.run(bind(cfg, replicas=replicas, gpus_per_replica=gpus_per_replica,
                           log_level="INFO" if verbose else "WARNING"), name="tts",
                      route_prefix="/", blocking=False, logging_config=quiet)
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
            _wait_ready(url, stop)
            typer.echo(f"serving {engine_dir} on {url} (ready in {time.perf_counter() - t0:.1f} s): POST "
                       f"{url}/v1/audio/speech", err=True)
            while not stop.wait(0.5):
                pass
            typer.echo("shutting down", err=True)
        finally:
            serve.shutdown()
            ray.shutdown()


def _config(*, engine_dir, voices_dir, backend, threads, max_active, max_queue, max_input_chars, max_upload_mb,
            model_name, replicas, gpus_per_replica, port, no_warmup, **_):
    """Every rule before Ray starts; the engines directory's manifest is read here."""
    from ..manifest import ManifestError, load_manifest
    from ..pipeline import EngineError
    from .api import Limits
    from .service import ServeConfig

    check_open_options(backend, None, threads)
    if max_queue < 0:
        raise OptionError("max_queue", max_queue, "must be >= 0")
    if not 1 <= port <= 65535:
        raise OptionError("port", port, "must be in [1, 65535]")
    if replicas < 1:
        raise OptionError("replicas", replicas, "must be >= 1")
    if not 0 <= gpus_per_replica <= 8:
        raise OptionError("gpus_per_replica", gpus_per_replica, "must be in [0, 8]")
    if max_input_chars < 1:
        raise OptionError("max_input_chars", max_input_chars, "must be >= 1")
    if not 0 < max_upload_mb <= 1024:
        raise OptionError("max_upload_mb", max_upload_mb, "must be in (0, 1024]")
    try:
        manifest = load_manifest(engine_dir)
    except ManifestError as e:
        raise EngineError(str(e)) from None
    most = ((manifest["stages"].get("dit_step") or {}).get("dims") or {}).get("B", {}).get("max", 1)
    if max_active is not None and not 1 <= max_active <= most:
        raise OptionError("max_active", max_active, f"must be in [1, {most}] (the DiT step's batch range)")
    return ServeConfig(str(engine_dir), None if voices_dir is None else str(voices_dir), backend, threads or None,
                       max_active, max_queue, Limits(max_input_chars, int(max_upload_mb * (1 << 20))),
                       tuple(model_name), not no_warmup)


def _wait_ready(url: str, stop: threading.Event) -> None:
    """Until GET /ready says 200; a replica that failed to load makes this a ServeError."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}").get("error", {}).get("message", "")
            if body.startswith("cannot serve"):
                raise ServeError(body) from None
        except (urllib.error.URLError, OSError, ValueError):
            pass  # the proxy is not up yet
        stop.wait(0.5)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
