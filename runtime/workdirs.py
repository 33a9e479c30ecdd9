"""Where the tools look when no directory is given, and the commands their hints print.

One convention, shared by ``tts-run``, ``tts-export`` and the demo:

- checkpoints live in ``checkpoints/`` (the released weights: ``tts-export download --out
  checkpoints``) or in one folder below it, ``checkpoints/NAME`` (the demo's random weights are
  ``checkpoints/tiny``);
- the engines built from ``checkpoints/NAME`` go to ``engines/NAME``, those from anything else to
  ``engines/``;
- a command given no directory takes ``engines/`` (``checkpoints/``) when it holds a build
  (``config.yaml``), else the one folder below it that does. Two or more is a usage error naming
  them; none leaves the default, whose error then says how to make one.

So after ``bash .ci/demo`` (``checkpoints/tiny`` → ``engines/tiny``) ``tts-run --text Hello`` finds the
demo's engines, and ``tts-export build`` its checkpoints, with no flag. A directory given on the
command line is taken as given, never searched.

Every hint that tells the user to (re)build prints a command that works as printed: the
checkpoints the directory was built from (the manifest records them), its output folder, and the
parity points it was gated at when they were not all four.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .errors import UsageError, UserError

ENGINES = Path("engines")
CHECKPOINTS = Path("checkpoints")
MANIFEST = "manifest.json"
CONFIG = "config.yaml"
ALL_POINTS = ("opt", "min", "awkward", "max")  # the build's parity points, its default order


def _builds_below(root: Path, marker: str) -> list[Path]:
    try:
        return sorted(p.parent for p in root.glob(f"*/{marker}") if p.is_file())
    except OSError:
        return []


def _default(root: Path, marker: str, flag: str, what: str) -> Path:
    if (root / marker).is_file() or not root.is_dir():
        return root
    found = _builds_below(root, marker)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UsageError(f"{root}/ holds no {marker} but {len(found)} {what} below it "
                         f"({', '.join(map(str, found))}): choose one with {flag} {found[0]}")
    return root


def engine_dir_or_default(given: str | Path | None, flag: str = "--engine-dir") -> Path:
    """``given``, or ``engines/`` / the one build below it (the demo's ``engines/tiny``)."""
    return Path(given) if given is not None else _default(ENGINES, MANIFEST, flag, "builds")


def checkpoints_or_default(given: str | Path | None, flag: str = "--checkpoints") -> Path:
    """``given``, or ``checkpoints/`` / the one checkpoint folder below it (``checkpoints/tiny``)."""
    return Path(given) if given is not None else _default(CHECKPOINTS, CONFIG, flag, "checkpoint folders")


def checkpoints_with_config(given: str | Path | None, flag: str = "--checkpoints") -> Path:
    """:func:`checkpoints_or_default`, which must hold a config.yaml: else a one-line error whose
    hint writes or downloads one."""
    ck = checkpoints_or_default(given, flag)
    if not (ck / CONFIG).is_file():
        raise UserError(f"no {CONFIG} in {ck}: {no_checkpoints_hint(ck)}")
    return ck


def engines_for(checkpoints: str | Path) -> Path:
    """The default output of a build: ``engines/NAME`` for ``checkpoints/NAME``, else ``engines/``."""
    try:
        rel = Path(checkpoints).resolve().relative_to(CHECKPOINTS.resolve())
    except ValueError:
        return ENGINES
    return ENGINES / rel.parts[0] if len(rel.parts) == 1 else ENGINES


def shown(path: str | Path) -> str:
    """A path as a hint prints it: relative to the working directory when inside it, quoted for a shell."""
    p = Path(path)
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        pass
    return shlex.quote(str(p) or ".")


def _manifest(engine_dir: Path) -> dict | None:
    try:
        data = json.loads((Path(engine_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _points(manifest: dict) -> list[str]:
    pts = set()
    for st in (manifest.get("stages") or {}).values():
        for c in ((st or {}).get("parity") or {}).get("checks") or []:
            if isinstance(c, dict) and c.get("point") in ALL_POINTS:
                pts.add(c["point"])
    return [p for p in ALL_POINTS if p in pts]


def _any_checkpoints() -> Path | None:
    """Checkpoints a hint can name when nothing records which: the default ones, if there are any."""
    if (CHECKPOINTS / CONFIG).is_file():
        return CHECKPOINTS
    found = _builds_below(CHECKPOINTS, CONFIG)
    return found[0] if found else None


def build_command(engine_dir: str | Path, manifest: dict | None = None, precision: str | None = None,
                  command: str = "build") -> str:
    """The ``tts-export build`` (or ``plan``) that rebuilds ``engine_dir`` as it was built: from
    the checkpoints its manifest records (read from the directory when not given), at its parity
    points."""
    engine_dir = Path(engine_dir)
    m = manifest if manifest is not None else _manifest(engine_dir)
    recorded = ((m or {}).get("checkpoints") or {}).get("path") if isinstance(m, dict) else None
    ckpt = recorded or _any_checkpoints()
    parts = [f"tts-export {command}"] + ([f"--precision {precision}"] if precision else [])
    parts += [f"--checkpoints {shown(ckpt) if ckpt else 'CHECKPOINT_DIR'}", f"--out {shown(engine_dir)}"]
    pts = _points(m) if isinstance(m, dict) else []
    if command == "build" and pts and pts != list(ALL_POINTS):
        parts.append(f"--points {','.join(pts)}")
    return " ".join(parts)


def rebuild_hint(engine_dir: str | Path, manifest: dict | None = None) -> str:
    return f"rebuild with `{build_command(engine_dir, manifest)}`"


def fresh_build_hint(engine_dir: str | Path, manifest: dict | None = None) -> str:
    """For a manifest the build cannot update either (damaged, another schema): the directory
    goes, then the build that made it runs again."""
    return f"remove it and rebuild: `rm -r {shown(engine_dir)} && {build_command(engine_dir, manifest)}`"


def no_build_hint(engine_dir: str | Path) -> str:
    """What to run when ``engine_dir`` holds no build: commands that work as printed. For the
    default ``engines/`` they write ``engines/NAME``, which the defaults then find."""
    default = Path(engine_dir).resolve() == ENGINES.resolve()
    ckpt = _any_checkpoints()
    if ckpt is not None:
        out = shown(engines_for(ckpt) if default else engine_dir)
        return f"build it with `tts-export build --checkpoints {shown(ckpt)} --out {out}`"
    out = shown(ENGINES / "tiny" if default else engine_dir)
    return (f"build one from random weights with `tts-export init-checkpoints --size tiny --out checkpoints/tiny && "
            f"tts-export build --checkpoints checkpoints/tiny --out {out}` (what `bash .ci/demo` does), or from "
            f"the released weights with `tts-export download --out checkpoints && tts-export build --checkpoints "
            f"checkpoints --out {shown(engine_dir)}`")


def no_build_message(engine_dir: str | Path) -> str:
    below = " (nor in a folder below it)" if Path(engine_dir).resolve() == ENGINES.resolve() else ""
    return f"no {MANIFEST} in {engine_dir}{below}: {no_build_hint(engine_dir)}"


def no_checkpoints_hint(checkpoints: str | Path) -> str:
    """What to run when ``checkpoints`` has no config.yaml: commands that work as printed."""
    ck = Path(checkpoints)
    download = f"download the released ones with `tts-export download --out {shown(ck)}`"
    if ck.resolve() == CHECKPOINTS.resolve():
        return (f"write random-weight ones with `tts-export init-checkpoints --size tiny --out checkpoints/tiny` "
                f"(the defaults then find them) or {download}")
    if ck.is_dir() and any(ck.iterdir()):  # init-checkpoints writes only into a new or empty folder
        return download
    return f"write random-weight ones with `tts-export init-checkpoints --size tiny --out {shown(ck)}` or {download}"


__all__ = ["ENGINES", "CHECKPOINTS", "engine_dir_or_default", "checkpoints_or_default", "checkpoints_with_config",
           "engines_for", "shown", "build_command", "rebuild_hint", "fresh_build_hint", "no_build_hint", "no_build_message",
           "no_checkpoints_hint"]
