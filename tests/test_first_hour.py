"""What a new user meets first (issue 18): the defaults, the demo and every hint agree, and each
hint is a command that works as printed; --help describes every option; outputs are readable as
``open()`` would make them; long text comes from a file or stdin.

A hinted command is checked by parsing it with the very CLI that will run it (click's own parser:
a misspelled flag or a missing value fails here) and by checking what it needs is there; the
cheap ones (``init-checkpoints --size tiny``, ``tts-run`` on the tiny engines) are run for real.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from indextts_trt.export.cli import app as export_app
from indextts_trt.runtime.cli import app as run_app

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--max-codes", "4", "--diffusion-steps", "1", "--greedy"]
COMMANDS = {"tts-run": typer.main.get_command(run_app), "tts-export": typer.main.get_command(export_app)}


def parse(cmdline: str) -> list[tuple[str, dict]]:
    """Each ``tts-run`` / ``tts-export SUB`` of a hint (``&&``-joined) parsed by its own CLI:
    [(name, params)]. Raises click's error for an unknown flag, a missing value, a bad choice.
    Other commands of the line (``pytest ...``) are not ours to parse."""
    out = []
    for part in cmdline.split("&&"):
        argv = shlex.split(part, comments=True)
        tool, args = argv[0], argv[1:]
        if tool not in COMMANDS:
            continue
        cmd = COMMANDS[tool]
        if hasattr(cmd, "commands"):  # a group (typer ships its own click: no isinstance)
            name, args = args[0], args[1:]
            cmd, tool = cmd.commands[name], f"{tool} {name}"
        with cmd.make_context(tool, list(args)) as ctx:
            out.append((tool, dict(ctx.params)))
    return out


def hints(message: str) -> list[str]:
    """The commands a message prints between backquotes."""
    return [h for h in re.findall(r"`([^`]+)`", message) if "tts-run" in h or "tts-export" in h]


def invoke(app, args, **kw):
    r = CliRunner().invoke(app, [str(a) for a in args], **kw)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output, r.output
    return r


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty working directory, as a new clone's (the defaults are relative to it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def demo_layout(root: Path, tiny_ckpt: Path, engine_dir: Path) -> None:
    """What `bash .ci/demo` leaves: checkpoints/tiny and the engines built from it, engines/tiny."""
    shutil.copytree(tiny_ckpt, root / "checkpoints" / "tiny")
    (root / "engines").mkdir()
    (root / "engines" / "tiny").symlink_to(engine_dir, target_is_directory=True)


# ---------------------------------------------------------------- defaults and hints


def test_a_fresh_directory_hints_commands_that_work(fresh):
    r = invoke(run_app, ["--text", "Hi.", "--out", "o.wav"])
    assert r.exit_code == 1 and "no manifest.json in engines" in r.output
    first, build = parse(hints(r.output)[0])
    assert first == ("tts-export init-checkpoints", {**first[1], "size": "tiny", "out": Path("checkpoints/tiny")})
    assert build[1]["checkpoints"] == Path("checkpoints/tiny") and build[1]["out"] == Path("engines/tiny")
    # tts-export build with no flag names the same first step
    r = invoke(export_app, ["build"])
    assert r.exit_code == 1 and "no config.yaml in checkpoints" in r.output
    (cmd,) = hints(r.output)[:1]
    assert parse(cmd)[0][1]["out"] == Path("checkpoints/tiny")
    r = invoke(export_app, shlex.split(cmd)[1:])  # run it as printed: 4-6 s
    assert r.exit_code == 0, r.output
    assert (fresh / "checkpoints/tiny/config.yaml").is_file()
    # the printed build now finds what it needs (not run here: the engines fixture is that build)
    from indextts_trt.runtime.workdirs import checkpoints_with_config, engines_for

    assert checkpoints_with_config(build[1]["checkpoints"]) == Path("checkpoints/tiny")
    assert engines_for(checkpoints_with_config(None)) == Path("engines/tiny") == build[1]["out"]


def test_after_the_demo_the_next_commands_need_no_flag(fresh, tiny_ckpt, engine_dir, prompt_wav):
    demo_layout(fresh, tiny_ckpt, engine_dir)
    from indextts_trt.runtime.workdirs import checkpoints_with_config, engine_dir_or_default, engines_for

    assert engine_dir_or_default(None) == Path("engines/tiny")
    assert checkpoints_with_config(None) == Path("checkpoints/tiny") and engines_for("checkpoints/tiny") == \
        Path("engines/tiny")
    # the demo's closing hint, as printed, on the demo's engines
    demo = (ROOT / ".ci" / "demo").read_text()
    (next_cmd,) = [ln.strip() for ln in demo.splitlines() if ln.strip().startswith("tts-run --speaker")]
    args = shlex.split(next_cmd, comments=True)[1:]
    parse(shlex.join(["tts-run", *args]))
    args[args.index("--speaker") + 1] = str(prompt_wav)  # the user's own prompt
    r = invoke(run_app, [*args, *FAST])
    assert r.exit_code == 0, r.output
    assert Path("out/hello.wav").is_file() and "engines/tiny" in r.output
    assert "TensorRT" not in r.output  # a CPU run asked nothing of TensorRT: why it is not used is --verbose
    assert re.search(r"wrote out/hello\.wav \([0-9.]+ s of audio; 1 segment, \d+ codes\)", r.output)
    # two builds below engines/: no guess, the choice is a command
    (fresh / "engines" / "other").symlink_to(engine_dir, target_is_directory=True)
    r = invoke(run_app, ["--text", "Hi.", "--out", "o.wav"])
    assert r.exit_code == 2 and "choose one with --engine-dir engines/other" in r.output


def test_a_stale_build_hints_the_build_that_made_it(fresh, tiny_ckpt, engine_dir):
    stale = fresh / "engines" / "tiny"
    stale.mkdir(parents=True)
    for f in engine_dir.iterdir():  # the host files (the graphs are not read before the check fails)
        if f.is_file() and not f.name.endswith((".onnx", ".data")):
            shutil.copy(f, stale)
    m = json.loads((engine_dir / "manifest.json").read_text())
    m["stages"]["campplus"]["graph_key"] = "0" * 16  # built for another spec
    (stale / "manifest.json").write_text(json.dumps(m))
    r = invoke(run_app, ["--text", "Hi.", "--out", "o.wav"])
    assert r.exit_code == 1 and "built for another spec" in r.output
    ((tool, p),) = parse(hints(r.output)[0])
    # the build's own checkpoints, its folder, its one parity point
    assert tool == "tts-export build" and p["checkpoints"].resolve() == tiny_ckpt.resolve()
    assert p["out"] == Path("engines/tiny") and p["points"] == "opt"
    assert (p["checkpoints"] / "config.yaml").is_file()
    # an older schema the build cannot update: the directory goes first, then the same build
    (stale / "manifest.json").write_text(json.dumps({**m, "schema_version": m["schema_version"] - 1}))
    r = invoke(run_app, ["--text", "Hi.", "--out", "o.wav"])
    assert r.exit_code == 1 and "older than this tool" in r.output
    (hint,) = hints(r.output)
    assert hint.startswith("rm -r engines/tiny && tts-export build ")
    assert parse(hint)[0][1] == p


@pytest.mark.parametrize("make", ["trt", "plan", "compat"])
def test_tensorrt_hints_parse(make, engine_dir):
    from indextts_trt.runtime.engine_plan import engine_compat_error, load_plan
    from indextts_trt.runtime.runners import BackendError, choose_backend

    m = json.loads((engine_dir / "manifest.json").read_text())
    if make == "trt":
        with pytest.raises(BackendError) as e:
            choose_backend(engine_dir, m, list(m["stages"]), "trt", "fp16")
        msg = str(e.value)
    elif make == "plan":
        with pytest.raises(FileNotFoundError) as e:
            load_plan(engine_dir)
        msg = str(e.value)
    else:
        msg = engine_compat_error({"stage": "bigvgan", "version": "10.1.0", "compute_capability": "9.0",
                                   "gpu": "H100", "precision": "fp16"}, "10.3.0", "L4", "8.9", engine_dir)
    ((tool, p),) = parse(hints(msg)[0])
    assert tool == "tts-export build" and p["precision"] == "fp16" and p["out"] == engine_dir
    assert (p["checkpoints"] / "config.yaml").is_file()


def test_readme_and_demo_commands_parse():
    """Every complete tts-run/tts-export line of the README's and the demo's shell blocks parses
    (lines with placeholders such as ``[...]``, ``a|b`` or ``...`` are a syntax summary, not a
    command)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S) + [(ROOT / ".ci" / "demo").read_text()]
    lines, cont = [], ""
    for block in blocks:
        for ln in block.splitlines():
            ln = cont + ln.strip()
            cont = ln[:-1] + " " if ln.endswith("\\") else ""
            if not cont and ln.startswith(("tts-run", "tts-export")):
                lines.append(ln)
    concrete = [ln for ln in lines if not re.search(r"\[|\||\.\.\.|…", ln.split("#")[0])]
    assert len(concrete) >= 8, concrete
    for ln in concrete:
        parse(ln)


# ---------------------------------------------------------------- quiet output


def test_the_exporter_drops_only_the_torchvision_notice():
    """torch.onnx logs "torchvision is not installed. Skipping torchvision::nms" (and 3 more ops)
    at every export; the filter set where the exporter is imported drops that message alone."""
    import logging

    from torch.onnx._internal.exporter import _registration

    from indextts_trt.export import onnx_export

    logger = logging.getLogger(_registration.__name__)
    seen: list[str] = []
    catch = logging.Handler(logging.WARNING)
    catch.emit = lambda r: seen.append(r.getMessage())  # on the logger itself: torch's loggers may not propagate
    logger.addHandler(catch)
    (f,) = [f for f in logger.filters if isinstance(f, onnx_export._NoTorchvisionNotice)]
    try:
        _registration._get_overload("torchvision::nms")  # what every export does
        logger.warning("another exporter warning")
        assert seen == ["another exporter warning"]
        logger.removeFilter(f)  # the test can fail: without the filter torch does log it, through this logger
        _registration._get_overload("torchvision::nms")
        assert seen[1:] == ["torchvision is not installed. Skipping torchvision::nms"]
    finally:
        logger.addFilter(f)
        logger.removeHandler(catch)


def test_every_shipped_folder_is_a_declared_package():
    """setuptools warns (a 40-line "Package ... is absent from the packages configuration" box at
    every install) when package data reaches into a folder that is not a declared package: each
    folder of code is declared, and package data names only its own package's files."""
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {v: k for k, v in tool["package-dir"].items()}
    declared = set(tool["packages"])
    code = set()
    for folder, name in roots.items():
        for d in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            if d.is_dir() and "__pycache__" not in d.parts and any(d.glob("*.py")):
                code.add(".".join([name, *d.relative_to(ROOT / folder).parts]))
    # export/tools: a maintainer's script run from the checkout (python export/tools/...), not shipped
    assert code - declared == {"indextts_trt.export.tools"}
    for pkg, patterns in tool["package-data"].items():
        root = max((r for r in tool["package-dir"] if pkg == r or pkg.startswith(r + ".")), key=len)
        where = ROOT.joinpath(tool["package-dir"][root], *pkg[len(root):].split(".")[1:])
        assert pkg in declared and all("/" not in p and any(where.glob(p)) for p in patterns), pkg


# ---------------------------------------------------------------- --help


def _numeric(p) -> bool:
    """An int or float option (typer 0.29 describes a parameter's type with its annotation; click
    with a ParamType)."""
    import typing

    ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
    if ann is None:
        return getattr(getattr(p, "type", None), "name", "") in ("integer", "float")
    return bool({int, float} & ({ann} | set(typing.get_args(ann))))


def _commands():
    for tool, cmd in COMMANDS.items():
        if hasattr(cmd, "commands"):
            yield from ((f"{tool} {n}", c) for n, c in cmd.commands.items())
        else:
            yield tool, cmd


@pytest.mark.parametrize("name,cmd", list(_commands()), ids=[n for n, _ in _commands()])
def test_every_option_says_what_it_does_its_default_and_range(name, cmd):
    text = cmd.get_help(cmd.context_class(cmd, info_name=name))
    assert "<bool>" not in text and "BOOLEAN" not in text
    bad = []
    for p in cmd.params:
        option = p.param_type_name == "option"
        if p.name == "help":
            continue
        flag, doc = "/".join(p.opts), p.help or ""
        if not doc.strip():
            bad.append(f"{flag}: no description")
        if option and p.is_flag and not p.secondary_opts:
            continue  # a flag is off unless given
        shown = option and p.show_default and p.default not in (None, [], ())
        if not (shown or "default" in doc.lower()):
            bad.append(f"{flag}: no default")
        if _numeric(p) and not re.search(r">=|> 0|in \[|in \(|\[0,|\(0,", doc):
            bad.append(f"{flag}: no range")
    assert not bad, f"{name}: " + "; ".join(bad)


# ---------------------------------------------------------------- file modes, text file


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_outputs_are_created_as_open_would(engine_dir, tiny_ckpt, prompt_wav, tmp_path):
    """WAVs, reports, saved voices under the user's umask; the build's and the checkpoints' files
    too (built in this process, under its umask): never mkstemp's private 0600."""
    umask = os.umask(0o022)
    os.umask(umask)
    for p in [engine_dir / "manifest.json", engine_dir / "host_data.safetensors", engine_dir / "parity_report.md",
              *engine_dir.glob("*.onnx"), tiny_ckpt / "config.yaml", tiny_ckpt / "gpt.pth"]:
        assert _mode(p) == 0o666 & ~umask, p
    assert _mode(tiny_ckpt) == 0o777 & ~umask
    old = os.umask(0o027)  # group-readable, others nothing: what a service account might use
    try:
        voices = tmp_path / "voices"
        r = invoke(run_app, ["--engine-dir", engine_dir, "--speaker", prompt_wav, "--save-voice", "me",
                             "--voices-dir", voices, "--text", "Hi.", "--out", tmp_path / "a.wav",
                             "--report", tmp_path / "r.json", *FAST])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    made = [tmp_path / "a.wav", tmp_path / "r.json", *voices.rglob("*")]
    assert len(made) >= 4
    for p in made:
        assert _mode(p) == (0o750 if p.is_dir() else 0o640), p


def test_text_file_and_stdin(tmp_path, monkeypatch):
    """The text of --text-file (a byte-order mark dropped) or of stdin ('-') is what the engines
    run on (``_run_engines`` stands in here: what it does with a text is the other tests')."""
    from indextts_trt.runtime import cli
    from indextts_trt.runtime.errors import UserError

    texts = []

    def run_engines(engine_dir, text, *a, **kw):
        texts.append(text)
        raise UserError("text recorded")

    monkeypatch.setattr(cli, "_run_engines", run_engines)
    base = ["--engine-dir", tmp_path / "engines", "--out", tmp_path / "o.wav", *FAST]
    text = "Hello there. This text came from a file, with a byte-order mark."
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    for args, kw in (([tmp_path / "t.txt"], {}), (["-"], {"input": "From standard input.\n"})):
        r = invoke(run_app, [*base, "--text-file", *args], **kw)
        assert r.exit_code == 1 and "text recorded" in r.output, r.output
    assert texts == [text, "From standard input.\n"]
    r = invoke(run_app, [*base, "--text", "x", "--text-file", tmp_path / "t.txt"])
    assert r.exit_code == 2 and "--text" in r.output and "--text-file" in r.output
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    r = invoke(run_app, [*base, "--text-file", tmp_path / "bad.txt"])
    assert r.exit_code == 1 and "not UTF-8 text (byte 3" in r.output
    r = invoke(run_app, [*base, "--text-file", tmp_path / "missing.txt"])
    assert r.exit_code == 1 and "missing.txt: cannot read it" in r.output
    assert texts == [text, "From standard input.\n"]


def test_many_segments_are_summarized_not_listed():
    from indextts_trt.runtime.cli import codes_summary

    line = codes_summary([96] * 700 + [40, 250] + [96] * 67)
    assert line == "769 segments, 73922 codes: 40-250 per segment, median 96" and len(line) < 80
    assert codes_summary([12]) == "1 segment, 12 codes" and codes_summary([]) == ""
    assert codes_summary([8] * 40) == "40 segments, 320 codes: 8 per segment"


def test_busy_line_shows_from_the_start(capsys):
    import time

    from indextts_trt.runtime.progress import busy

    with busy("text (100000 characters)", every=0.05):
        time.sleep(0.2)
    assert "text (100000 characters): 00:00" in capsys.readouterr().err
    with busy("quiet", enabled=False):
        pass
    assert "quiet" not in capsys.readouterr().err


def test_each_option_changes_what_the_models_receive(ort_pipe, prompt_wav, tmp_path):
    """Random weights make the demo's audio nearly deaf to its options (README: "Random weights"):
    each flag still changes the conditioning the models get — the GPT's conditioning rows
    (``conds``: speaker latents + emovec, gpt_prefill's input) and S2Mel's prompt tensors (style,
    reference mel, prompt condition: the DiT's). The flags go through tts-run's own parser and
    request rules (``_request``), then the pipeline's ``prepare``, as a run does."""
    from collections import defaultdict

    import numpy as np
    import soundfile as sf

    from indextts_trt.runtime.cli import _request
    from indextts_trt.runtime.demo_audio import synth_voice_prompt

    other, emo = tmp_path / "other.wav", tmp_path / "emo.wav"
    sf.write(other, synth_voice_prompt(3.0, 22050, seed=11), 22050)
    sf.write(emo, synth_voice_prompt(2.0, 22050, seed=12), 22050)
    runs = {"base": f"--speaker {prompt_wav}", "speaker": f"--speaker {other}",
            "emotion audio": f"--speaker {prompt_wav} --emotion-audio {emo}",
            "emotion alpha": f"--speaker {prompt_wav} --emotion-audio {emo} --emotion-alpha 0.4",
            "emotion vector": f"--speaker {prompt_wav} --emotion-vector 0,0,0.8,0,0,0,0,0"}
    got = {}
    for name, args in runs.items():
        ((_, params),) = parse(f"tts-run --text Hi. --out {tmp_path / 'o.wav'} {args}")
        opts, _ = _request(**params)
        req = ort_pipe.prepare(params["text"], params["speaker"], params["emotion_audio"], opts, defaultdict(float))
        got[name] = {"conds": req.conds, "style": req.c.style, "ref_mel": req.c.ref_mel,
                     "prompt_condition": req.c.prompt_condition}

    def moved(a, b) -> float:  # the change relative to the largest value (inf: another shape)
        return np.inf if a.shape != b.shape else float(np.abs(a - b).max() / np.abs(b).max())

    # measured on the tiny engines: conds moves by 1e-2 (emotion audio) to 2e-1 (vector) of its
    # largest value, the random CAMPPlus's style by 1.3e-4; float32 rounding is 1.2e-7
    big = 1e-5
    base = got["base"]
    for name in runs:
        if name == "base":
            continue
        assert moved(got[name]["conds"], base["conds"]) > big, name
        speaker_moved = [moved(got[name][k], base[k]) for k in ("style", "ref_mel", "prompt_condition")]
        if name == "speaker":
            assert min(speaker_moved) > big
        else:  # an emotion changes the GPT's conditioning only, as upstream
            assert max(speaker_moved) == 0, name
    assert moved(got["emotion alpha"]["conds"], got["emotion audio"]["conds"]) > big
