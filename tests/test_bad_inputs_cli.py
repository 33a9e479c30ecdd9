"""Bad input through the command lines: each row the exit code (2 usage, 1 data), the words that
name the flag or file, one line on stderr and no traceback; plus the faults a test must provoke
for real: a full filesystem, an internal error, a build killed with SIGKILL.

Rows run in-process with typer's CliRunner; only the killed build needs a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indextts_trt.export.cli import app as export_app
from indextts_trt.runtime.cli import app as run_app

from test_bad_inputs import Ctx, flip_bytes, truncate

FAST = ["--max-codes", "4", "--diffusion-steps", "1", "--greedy", "--text", "Hi."]


@pytest.fixture
def ctx(request, tmp_path):
    c = Ctx(request, tmp_path)
    yield c
    c.close()


def invoke(app, args) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception  # nothing escaped typer
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.output


def run(c: Ctx, *args, engines: Path | None = None):
    """tts-run on the shared engines (or a damaged copy), writing into the row's folder."""
    return run_app, ["--engine-dir", engines or c.fixture("engine_dir"), "--out", c.tmp / "o.wav", *args]


def torch_run(damage):
    def row(c: Ctx):
        d = c.ckpt()
        damage(d)
        return run_app, ["--backend", "torch", "--checkpoints", d, "--speaker", c.prompt, "--out", c.tmp / "o.wav",
                         *FAST]
    return row


def wrong_shape(d: Path) -> None:
    import torch

    sd = torch.load(d / "gpt.pth", weights_only=True)
    key = next(k for k, v in sd.items() if v.ndim == 2)
    sd[key] = torch.zeros(3, 3)
    torch.save(sd, d / "gpt.pth")


def corrupt_header(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[8:20] = b"\xff" * 12  # inside the JSON header that follows the 8-byte length
    p.write_bytes(bytes(b))


def char_device(c: Ctx) -> Path:
    p = c.tmp / "full"
    try:
        os.mknod(p, 0o666 | 0o020000, os.makedev(1, 7))  # a stand-in for /dev/full: never touch the real one
    except PermissionError:
        pytest.skip("making a character device needs root")
    return p


def damaged_engines(damage):
    def make(c: Ctx) -> Path:
        d = c.engines()
        damage(d)
        return d
    return make


ROWS = [  # (id, (ctx) -> (app, args), exit code, words the output names)
    ("seed-negative", lambda c: run(c, "--seed", "-1"), 2, ["--seed -1", ">= 0"]),
    ("seed-not-a-number", lambda c: run(c, "--seed", "abc"), 2, ["--seed"]),
    ("diffusion-negative", lambda c: run(c, "--diffusion-steps", "-3"), 2, ["--diffusion-steps -3", "[1, 1000]"]),
    ("emotion-sum-4", lambda c: run(c, "--emotion-vector", "1,1,1,1,0,0,0,0"), 2, ["--emotion-vector", "sum"]),
    ("emotion-negative", lambda c: run(c, "--emotion-vector", "-0.1,0,0,0,0,0,0,0"), 2, ["--emotion-vector"]),
    ("emotion-nan", lambda c: run(c, "--emotion-vector", "nan,0,0,0,0,0,0,0"), 2, ["--emotion-vector"]),
    ("emotion-words", lambda c: run(c, "--emotion-vector", "happy"), 2, ["--emotion-vector", "8 comma-separated"]),
    ("alpha-nan", lambda c: run(c, "--emotion-alpha", "nan", "--emotion-vector", "0,0,0.5,0,0,0,0,0"), 2,
     ["--emotion-alpha nan"]),
    ("alpha-alone", lambda c: run(c, "--emotion-alpha", "0.5"), 2, ["--emotion-alpha", "no effect"]),
    ("threads-negative", lambda c: run(c, "--threads", "-2"), 2, ["--threads -2"]),
    ("stream-chunk-negative", lambda c: run(c, "--stream-chunk", "-5"), 2, ["--stream-chunk -5"]),
    ("stream-overlap-alone", lambda c: run(c, "--stream-overlap", "3"), 2, ["--stream-overlap needs --stream-chunk"]),
    ("voice-empty", lambda c: run(c, "--voice", ""), 2, ["--voice ''", "voice name"]),
    ("save-voice-empty", lambda c: run(c, "--save-voice", "", "--speaker", c.prompt), 2, ["--save-voice ''"]),
    ("save-voice-escapes", lambda c: run(c, "--save-voice", "../../x", "--speaker", c.prompt), 2, ["--save-voice"]),
    ("voice-and-speaker", lambda c: run(c, "--voice", "a", "--speaker", c.prompt), 2, ["--voice", "--speaker"]),
    ("voice-and-save-voice", lambda c: run(c, "--voice", "a", "--save-voice", "b"), 2, ["--save-voice"]),
    ("save-voice-without-speaker", lambda c: run(c, "--save-voice", "a"), 2, ["--save-voice needs --speaker"]),
    ("greedy-with-top-k", lambda c: run(c, "--greedy", "--top-k", "3"), 2, ["--greedy", "--top-k"]),
    ("backend-unknown", lambda c: run(c, "--backend", "tensorflow"), 2, ["--backend 'tensorflow'"]),
    ("beams-over-the-graph", lambda c: run(c, "--num-beams", "9", "--speaker", c.prompt), 2, ["--num-beams 9",
                                                                                               "[1, 8]"]),
    ("segment-over-the-table", lambda c: run(c, "--max-segment-tokens", "500", "--speaker", c.prompt), 2,
     ["--max-segment-tokens 500", "120"]),
    ("text-empty", lambda c: run(c, "--text", " ", "--speaker", c.prompt), 2, ["empty text"]),
    ("out-char-device", lambda c: (run_app, ["--engine-dir", c.tmp, "--out", char_device(c)]), 1,
     ["full", "character device"]),
    ("out-fifo", lambda c: (run_app, ["--out", (c.tmp / "f", os.mkfifo(c.tmp / "f"))[0]]), 1, ["a FIFO"]),
    ("out-directory", lambda c: (run_app, ["--out", c.tmp]), 1, ["is a directory"]),
    ("report-under-a-file", lambda c: run(c, "--report", c.prompt / "r.json"), 1, ["is not a directory"]),
    ("report-is-out", lambda c: run(c, "--report", c.tmp / "o.wav"), 2, ["--report", "--out"]),
    ("speaker-missing", lambda c: run(c, "--speaker", c.tmp / "no.wav", *FAST), 1, ["no.wav", "not found"]),
    ("engines-missing", lambda c: run(c, *FAST, engines=c.tmp / "nowhere"), 1, ["no manifest.json"]),
    ("graph-flipped-bytes", lambda c: run(c, "--speaker", c.prompt, *FAST,
                                          engines=damaged_engines(lambda d: flip_bytes(d / "bigvgan.onnx"))(c)), 1,
     ["bigvgan.onnx", "does not match the manifest"]),
    ("host-data-truncated", lambda c: run(c, *FAST, engines=damaged_engines(
        lambda d: truncate(d / "host_data.safetensors"))(c)), 1, ["host_data.safetensors"]),
    ("voice-not-found", lambda c: run(c, "--voice", "ghost", *FAST), 1, ["ghost", "not found"]),
    ("torch-truncated-gpt", torch_run(lambda d: truncate(d / "gpt.pth")), 1, ["gpt.pth", "truncated or corrupt"]),
    ("torch-corrupt-safetensors", torch_run(lambda d: corrupt_header(d / "hf_cache/semantic_codec_model.safetensors")),
     1, ["semantic_codec_model.safetensors", "corrupt"]),
    ("torch-wrong-shape", torch_run(wrong_shape), 1, ["gpt.pth", "wrong shapes", "(3, 3)"]),
    ("torch-no-checkpoints", lambda c: (run_app, ["--backend", "torch", "--checkpoints", c.tmp / "none", "--out",
                                                  c.tmp / "o.wav"]), 1, ["none"]),
    ("check-truncated-graph", lambda c: (export_app, ["check", damaged_engines(
        lambda d: truncate(d / "vq2emb.onnx"))(c)]), 1, ["vq2emb.onnx", "bytes, the manifest records"]),
    ("inspect-manifest-a-list", lambda c: (export_app, ["inspect", c.manifest(lambda m: [m])]), 1, ["JSON object"]),
    ("build-unknown-stage", lambda c: (export_app, ["build", "--checkpoints", c.fixture("tiny_ckpt"), "--out",
                                                    c.tmp / "e", "--stage", "nope"]), 2, ["--stage", "nope"]),
    ("build-bad-points", lambda c: (export_app, ["build", "--checkpoints", c.fixture("tiny_ckpt"), "--out",
                                                 c.tmp / "e", "--points", "best"]), 2, ["--points 'best'"]),
    ("build-out-is-a-file", lambda c: (export_app, ["build", "--checkpoints", c.fixture("tiny_ckpt"), "--out",
                                                    c.prompt]), 1, ["cannot create output directory"]),
    ("build-truncated-checkpoint", lambda c: (export_app, ["build", "--checkpoints", (c.ckpt(), truncate(
        c.ckpt() / "hf_cache/semantic_codec_model.safetensors"))[0], "--out", c.tmp / "e", "--stage", "vq2emb"]), 1,
     ["semantic_codec_model.safetensors"]),
    ("build-precision", lambda c: (export_app, ["build", "--precision", "fp8"]), 2, ["--precision 'fp8'"]),
    ("init-onto-a-device", lambda c: (export_app, ["init-checkpoints", "--out", char_device(c), "--overwrite"]), 1,
     ["full", "not a directory"]),
    ("init-size", lambda c: (export_app, ["init-checkpoints", "--size", "huge", "--out", c.tmp / "k"]), 2,
     ["--size 'huge'"]),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_cli(row, ctx):
    _, make, code, names = row
    app, args = make(ctx)
    got, output = invoke(app, args)
    assert got == code, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    if row[0] != "seed-not-a-number":  # click's own usage format
        assert len(errors) == 1, output
    for word in names:
        assert word in output, f"{word!r} not in {output!r}"
    assert not (ctx.tmp / "o.wav").exists()  # nothing written on any error
    if (ctx.tmp / "full").exists():  # the stand-in for /dev/full is still the device it was
        assert (ctx.tmp / "full").is_char_device()


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(ctx, monkeypatch):
    import indextts_trt.runtime.cli as cli

    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_run_engines", bug)
    code, out = invoke(run_app, ["--out", ctx.tmp / "o.wav"])
    assert code == 1 and "error: internal error: ZeroDivisionError: a bug (rerun with --debug" in out
    r = CliRunner().invoke(run_app, ["--out", str(ctx.tmp / "o.wav"), "--debug"])
    assert r.exit_code == 1 and "Traceback" in r.output and "ZeroDivisionError" in r.output


@pytest.fixture
def full_fs(tmp_path):
    """A real full filesystem: a 64 KiB tmpfs filled to the last block (root only)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the ENOSPC path is covered by a simulated row")
    try:
        with open(mnt / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to flush at close
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_on_out_is_a_clear_error_and_leaves_nothing(engine_dir, prompt_wav, full_fs):
    code, out = invoke(run_app, ["--engine-dir", engine_dir, "--speaker", prompt_wav, "--out", full_fs / "o.wav",
                                 *FAST])
    assert code == 1 and f"cannot write {full_fs / 'o.wav'}: no space left on device" in out, out
    assert sorted(p.name for p in full_fs.iterdir()) == ["filler"]  # no WAV, no temporary file


def test_a_build_killed_with_sigkill_leaves_nothing_after_the_rerun(tiny_ckpt, tmp_path):
    """kill -9 halfway through a build: its .build-<stage>-* directory stays until the next build,
    which removes it (and any temporary file of its atomic writes) and leaves nothing behind."""
    from indextts_trt.export.build import build

    out = tmp_path / "e"
    code = ("import sys; from indextts_trt.export.build import build; "
            "build(sys.argv[1], sys.argv[2], points=('opt',), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tiny_ckpt), str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list(out.glob(".build-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the build ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and list(out.glob(".build-*")), "killed before its temporary dir"
    (out / ".manifest.json.k1ll3d.tmp").write_text("{")  # as a kill during an atomic write leaves it
    assert build(tiny_ckpt, out, stages=["vq2emb"], points=("opt",), progress=False).ok
    left = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".build.lock"]
    assert left == [], left
    assert "vq2emb" in json.loads((out / "manifest.json").read_text())["stages"]
    shutil.rmtree(out)
