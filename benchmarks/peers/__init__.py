"""Peers: other IndexTTS2 implementations the bench runs on the same work, each in its own
environment and interpreter (never in the project's venv, never in CI).

This side checks the peer's interpreter and model folder (one-line errors), runs its driver in a
subprocess and checks what comes back; the driver (``indextts_onnx.py``) runs inside the peer's
environment and imports only the peer, numpy and the standard library.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import indextts_onnx as _port


@dataclass(frozen=True)
class Peer:
    name: str  # the --peer value and the report's column key
    dist: str  # its distribution on the registry
    version: str  # the one its driver times
    module: str  # what its interpreter must import
    label: str  # the report's column label
    driver: Path
    convert_hint: str  # how its model folder is made from upstream-format checkpoints


PEERS = {
    "indextts-onnx": Peer(
        "indextts-onnx", _port.PORT, _port.VERSION, "indextts_onnx", f"indextts-onnx {_port.VERSION} (port)",
        Path(_port.__file__),
        "{python} -m indextts_onnx.export.export_all --checkpoint-dir CHECKPOINTS --output-dir {models} --quantize "
        "(the port's converter: it needs torch, onnx, transformers and upstream's indextts package in that "
        "environment)"),
}


class PeerError(ValueError):
    """A wrong --peer/--peer-python/--peer-models: the CLI prints it as one line (exit 2)."""


def get(name: str) -> Peer:
    if name not in PEERS:
        raise PeerError(f"--peer {name!r}: choose from {', '.join(PEERS)}")
    return PEERS[name]


def check_python(peer: Peer, python: Path | None) -> str:
    """The peer's version as its interpreter ``python`` imports it; PeerError naming the path when
    the interpreter is missing or cannot import the peer (or imports another version)."""
    if python is None:
        raise PeerError(f"--peer {peer.name} needs --peer-python PATH: the interpreter of the environment "
                        f"{peer.dist} is installed in (e.g. python -m venv /tmp/peer-{peer.name} && "
                        f"/tmp/peer-{peer.name}/bin/pip install {peer.dist}=={peer.version})")
    p = Path(python)
    if not p.is_file() or not os.access(p, os.X_OK):
        raise PeerError(f"--peer-python {p}: no such interpreter")
    probe = (f"import importlib.metadata as m, {peer.module}, numpy; print(m.version({peer.dist!r}))")
    try:
        r = subprocess.run([str(p), "-c", probe], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PeerError(f"--peer-python {p}: could not run it ({type(e).__name__})") from None
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeerError(f"--peer-python {p}: {peer.dist} is not importable there ({why}); install it into that "
                        f"environment: {p} -m pip install {peer.dist}=={peer.version}")
    version = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "?"
    if version != peer.version:
        raise PeerError(f"--peer-python {p}: {peer.dist} {version} is installed there; the bench's driver times "
                        f"{peer.version}'s stages (pip install {peer.dist}=={peer.version})")
    return version


def check_models(peer: Peer, models: Path | None, python: Path) -> Path:
    """The peer's model folder, complete; PeerError saying how to make it otherwise."""
    hint = peer.convert_hint.format(python=python, models=models or "DIR")
    if models is None:
        raise PeerError(f"--peer {peer.name} needs --peer-models DIR: the port's own ONNX folder made from "
                        f"--checkpoints by {hint}")
    missing = _port.missing_files(Path(models))
    if missing:
        raise PeerError(f"--peer-models {models}: not {peer.dist}'s model folder (missing {', '.join(missing[:3])}"
                        f"{', …' if len(missing) > 3 else ''}); make it with {hint}")
    return Path(models)


def run(peer: Peer, python: Path, models: Path, work: dict, tmp: Path, timeout: float) -> dict:
    """The peer's driver on ``work`` (a Workload's JSON) in its interpreter; its checked result."""
    a, o = tmp / f"{peer.name}.args.json", tmp / f"{peer.name}.out.json"
    a.write_text(json.dumps({"workload": work, "peer_models": str(models)}))
    env = dict(os.environ)
    if work["threads"]:
        env["OMP_NUM_THREADS"] = str(work["threads"])
    r = subprocess.run([str(python), str(peer.driver), str(a), str(o)], env=env, timeout=timeout,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"peer {peer.name} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return parse_result(json.loads(o.read_text()), work)


def parse_result(doc: dict, work: dict) -> dict:
    """``doc`` if it is a complete result of ``work``: every text, ``runs`` runs each, every stage
    timed, exactly the text's codes; ValueError naming the first gap."""
    for key in ("load_seconds", "peak_rss_bytes", "runs"):
        if key not in doc:
            raise ValueError(f"peer result: no {key!r}")
    for t in work["texts"]:
        runs = doc["runs"].get(t["name"])
        if not runs or len(runs) != work["runs"]:
            raise ValueError(f"peer result: text {t['name']}: {len(runs or [])} runs, expected {work['runs']}")
        for r in runs:
            gaps = [k for k in (*_port.STAGES, "total", "audio_seconds") if not isinstance(r.get(k), (int, float))]
            if gaps:
                raise ValueError(f"peer result: text {t['name']}: no {gaps[0]!r}")
            if r.get("codes") != t["codes"]:
                raise ValueError(f"peer result: text {t['name']}: {r.get('codes')} codes, the work forces {t['codes']}")
            if r.get("dit_step_calls") not in (None, work["diffusion_steps"]):
                raise ValueError(f"peer result: text {t['name']}: {r['dit_step_calls']} DiT steps, the work has "
                                 f"{work['diffusion_steps']}")
    return doc


__all__ = ["PEERS", "Peer", "PeerError", "get", "check_python", "check_models", "run", "parse_result"]
