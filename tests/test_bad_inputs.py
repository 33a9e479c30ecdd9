"""Bad input, damaged engines and faults through the Python API: one table, each row the exact
error class and the words that name the culprit (field, file, tensor or limit), in one line.

The tiny engines are built once per test run (``engine_dir``); a row that damages something works
on its own copy. The same through the command lines (exit codes, flags): ``test_bad_inputs_cli.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indextts_trt.runtime.audio import AudioError, write_wav_int16
from indextts_trt.runtime.demo_audio import synth_voice_prompt
from indextts_trt.runtime.errors import OptionError, WriteError
from indextts_trt.runtime.files import write_text_atomic
from indextts_trt.runtime.manifest import IntegrityError
from indextts_trt.runtime.options import RunOptions
from indextts_trt.runtime.pipeline import EngineError, open_pipeline
from indextts_trt.runtime.sampling import SamplingOptions
from indextts_trt.runtime.streaming import ChunkPlan
from indextts_trt.runtime.text import TextError
from indextts_trt.runtime.voices import VoiceError

FAST = RunOptions(sampling=SamplingOptions.greedy(max_new_tokens=4), diffusion_steps=1)


class Ctx:
    """What a row needs, made on demand: copies of the engines and checkpoints, prompts, pipelines."""

    def __init__(self, request, tmp: Path):
        self.request, self.tmp, self._pipes = request, tmp, []

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def engines(self) -> Path:
        d = self.tmp / "engines"
        if not d.exists():
            shutil.copytree(self.fixture("engine_dir"), d, ignore=shutil.ignore_patterns("voices"))
        return d

    def ckpt(self) -> Path:
        d = self.tmp / "ckpt"
        if not d.exists():
            shutil.copytree(self.fixture("tiny_ckpt"), d)
        return d

    def manifest(self, edit) -> Path:
        d = self.engines()
        m = json.loads((d / "manifest.json").read_text())
        (d / "manifest.json").write_text(json.dumps(edit(m)))
        return d

    def pipe(self, d: Path | None = None):
        p = open_pipeline(d or self.fixture("engine_dir"), threads=2)
        self._pipes.append(p)
        return p

    def wav(self, seconds: float, sr: int = 22050, name: str = "p.wav", data=None) -> Path:
        p = self.tmp / name
        sf.write(p, synth_voice_prompt(seconds, sr, seed=2) if data is None else data, sr, subtype="FLOAT")
        return p

    @property
    def prompt(self) -> Path:
        return self.fixture("prompt_wav")

    def close(self):
        for p in self._pipes:
            p.close()


@pytest.fixture
def ctx(request, tmp_path):
    c = Ctx(request, tmp_path)
    yield c
    c.close()


@pytest.fixture(scope="session")
def other_build(tmp_path_factory):
    """vq2emb and semantic_codec from other random checkpoints (seed 1): another build's graphs."""
    from indextts_trt.export.build import build
    from indextts_trt.reference.init_checkpoints import init_checkpoints

    root = tmp_path_factory.mktemp("other")
    init_checkpoints("tiny", root / "ckpt", seed=1, progress=False)
    assert build(root / "ckpt", root / "e", stages=["vq2emb"], points=("opt",), progress=False).ok
    return root / "e"


def flip_bytes(p: Path, n: int = 64) -> None:
    b = bytearray(p.read_bytes())
    for i in range(n):
        b[len(b) // 2 + i] ^= 0xFF
    p.write_bytes(bytes(b))


def truncate(p: Path, keep: float = 0.5) -> None:
    p.write_bytes(p.read_bytes()[: int(p.stat().st_size * keep)])


# ------------------------------------------------------------------------------ damaged engines


def swapped(c: Ctx):  # vq2emb.onnx replaced by another build's
    shutil.copy(c.fixture("other_build") / "vq2emb.onnx", c.engines() / "vq2emb.onnx")
    return c.pipe(c.engines()).stage("vq2emb")


def mixed(c: Ctx):  # another build's vq2emb with its own manifest entry: each file intact, the mix is not
    other = c.fixture("other_build")
    shutil.copy(other / "vq2emb.onnx", c.engines() / "vq2emb.onnx")
    entry = json.loads((other / "manifest.json").read_text())["stages"]["vq2emb"]
    return c.pipe(c.manifest(lambda m: {**m, "stages": {**m["stages"], "vq2emb": entry}}))


def damaged(fn, stage: str | None = None):
    """Damage the engines copy with ``fn(dir)``, then open the pipeline (and the stage)."""
    def row(c: Ctx):
        d = c.engines()
        fn(d)
        p = c.pipe(d)
        return p.stage(stage) if stage else p
    return row


def voice_json(edit):
    def row(c: Ctx):
        pipe = c.pipe()
        pipe.save_voice(c.tmp / "v", "a", c.prompt)
        edit(c.tmp / "v")
        return pipe.load_voice(c.tmp / "v", "a")
    return row


def wrong_voice_tensor(c: Ctx):  # intact file, consistent hash, but a tensor of the wrong shape
    from indextts_trt.runtime.voices import save_voice

    pipe = c.pipe()
    t = pipe.voice_tensors(c.prompt)
    save_voice(c.tmp / "v", "a", {**t, "style": t["style"][:, :-1]}, pipe.voice_origin(), "p.wav")
    return pipe.load_voice(c.tmp / "v", "a")


def symlinked_voice(c: Ctx):  # a voice file that is a link to a file outside: refused, the file untouched
    outside = c.tmp / "outside.txt"
    outside.write_text("keep")
    (c.tmp / "v").mkdir()
    (c.tmp / "v" / "a.safetensors").symlink_to(outside)
    try:
        c.pipe().save_voice(c.tmp / "v", "a", c.prompt)
    finally:
        assert outside.read_text() == "keep"


def enospc(c: Ctx, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    try:
        write_wav_int16(c.tmp / "o.wav", np.zeros(100, np.int16), 22050)
    finally:
        monkeypatch.undo()
        assert list(c.tmp.iterdir()) == []  # nothing left: no WAV, no temporary file


def special_file(kind: str):
    def row(c: Ctx):
        p = c.tmp / kind
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "symlink":
            (c.tmp / "target.wav").write_bytes(b"keep")
            p.symlink_to(c.tmp / "target.wav")
        elif kind == "directory":
            p.mkdir()
        elif kind == "chardev":  # what /dev/full is; only root can make one
            try:
                os.mknod(p, 0o666 | 0o020000, os.makedev(1, 7))
            except PermissionError:
                pytest.skip("making a character device needs root")
        try:
            write_wav_int16(p, np.zeros(10, np.int16), 22050)
        finally:
            assert kind != "symlink" or (c.tmp / "target.wav").read_bytes() == b"keep"
            assert [q.name for q in c.tmp.iterdir() if q.name.endswith(".tmp")] == []
    return row


@dataclass(frozen=True)
class Row:
    id: str
    call: object  # (ctx) -> anything; (ctx, monkeypatch) when it takes two arguments
    error: type
    names: tuple[str, ...]  # words the message must contain


def _r(id, call, error, *names):
    return Row(id, call, error, names)


V8 = [0.0] * 8
ROWS = [
    # ---- emotion
    _r("emotion-7-weights", lambda c: RunOptions(emotion_vector=[0.1] * 7).validated(), OptionError, "emotion_vector",
       "8 weights"),
    _r("emotion-negative", lambda c: RunOptions(emotion_vector=[-0.1] + V8[1:]).validated(), OptionError,
       "emotion_vector", "[0, 1]"),
    _r("emotion-sum-4", lambda c: RunOptions(emotion_vector=[0.5] * 8).validated(), OptionError, "sum to at most 1"),
    _r("emotion-nan", lambda c: RunOptions(emotion_vector=[float("nan")] + V8[1:]).validated(), OptionError,
       "emotion_vector"),
    _r("emotion-inf", lambda c: RunOptions(emotion_vector=[float("inf")] + V8[1:]).validated(), OptionError,
       "emotion_vector"),
    _r("emotion-not-a-list", lambda c: RunOptions(emotion_vector=5).validated(), OptionError, "emotion_vector"),
    _r("emotion-2d-array", lambda c: RunOptions(emotion_vector=np.zeros((2, 4))).validated(), OptionError,
       "emotion_vector"),
    _r("alpha-negative", lambda c: RunOptions(emo_alpha=-1).validated(), OptionError, "emo_alpha", "[0, 1]"),
    _r("alpha-2", lambda c: RunOptions(emo_alpha=2).validated(), OptionError, "emo_alpha"),
    _r("alpha-nan", lambda c: RunOptions(emo_alpha=float("nan")).validated(), OptionError, "emo_alpha"),
    _r("alpha-without-emotion", lambda c: c.pipe().synthesize("Hi.", c.prompt, options=FAST.replace(emo_alpha=0.5)),
       OptionError, "emo_alpha", "no effect"),
    _r("emotion-audio-and-vector", lambda c: c.pipe().synthesize(
        "Hi.", c.prompt, emotion_audio=c.prompt, options=FAST.replace(emotion_vector=V8)), OptionError,
       "emotion_vector", "not both"),
    _r("emotion-audio-not-a-path", lambda c: c.pipe().synthesize("Hi.", c.prompt, emotion_audio=np.zeros(16000),
                                                                  options=FAST), OptionError, "emotion_audio"),
    # ---- diffusion, seed, options
    _r("diffusion-0", lambda c: RunOptions(diffusion_steps=0).validated(), OptionError, "diffusion_steps", "[1, 1000]"),
    _r("diffusion-negative", lambda c: RunOptions(diffusion_steps=-3).validated(), OptionError, "diffusion_steps"),
    _r("diffusion-float", lambda c: RunOptions(diffusion_steps=2.5).validated(), OptionError, "diffusion_steps"),
    _r("seed-negative", lambda c: RunOptions(seed=-1).validated(), OptionError, "seed", ">= 0"),
    _r("seed-bool", lambda c: RunOptions(seed=True).validated(), OptionError, "seed"),
    _r("cfg-nan", lambda c: RunOptions(cfg_rate=float("nan")).validated(), OptionError, "cfg_rate"),
    _r("silence-negative", lambda c: RunOptions(interval_silence_ms=-1).validated(), OptionError,
       "interval_silence_ms"),
    _r("options-not-dataclass", lambda c: c.pipe().synthesize("Hi.", c.prompt, options={"seed": 1}), OptionError,
       "options"),
    _r("api-diffusion-0", lambda c: c.pipe().synthesize("Hi.", c.prompt, options=RunOptions(diffusion_steps=0)),
       OptionError, "diffusion_steps"),
    # ---- sampling
    _r("beams-0", lambda c: SamplingOptions(num_beams=0).validated(), OptionError, "num_beams"),
    _r("beams-over-the-graph", lambda c: c.pipe().synthesize("Hi.", c.prompt, options=FAST.replace(
        sampling=SamplingOptions(num_beams=9))), OptionError, "num_beams", "[1, 8]"),
    _r("top-p-0", lambda c: SamplingOptions(top_p=0.0).validated(), OptionError, "top_p"),
    _r("top-p-nan", lambda c: SamplingOptions(top_p=float("nan")).validated(), OptionError, "top_p"),
    _r("top-k-negative", lambda c: SamplingOptions(top_k=-1).validated(), OptionError, "top_k"),
    _r("temperature-inf", lambda c: SamplingOptions(temperature=float("inf")).validated(), OptionError, "temperature"),
    _r("temperature-0", lambda c: SamplingOptions(temperature=0.0).validated(), OptionError, "temperature"),
    _r("penalty-inf", lambda c: SamplingOptions(repetition_penalty=float("inf")).validated(), OptionError,
       "repetition_penalty"),
    _r("max-codes-0", lambda c: SamplingOptions(max_new_tokens=0).validated(), OptionError, "max_new_tokens"),
    _r("min-over-max", lambda c: SamplingOptions(max_new_tokens=5, min_new_tokens=6).validated(), OptionError,
       "min_new_tokens"),
    _r("sampling-not-dataclass", lambda c: RunOptions(sampling={"num_beams": 3}).validated(), OptionError,
       "sampling"),
    # ---- streaming, opening
    _r("stream-chunk-negative", lambda c: ChunkPlan(-5), OptionError, "chunk_codes", ">= 1"),
    _r("stream-overlap-over-chunk", lambda c: ChunkPlan(5, 9), OptionError, "overlap_codes", "[0, chunk=5]"),
    _r("stream-chunk-not-a-plan", lambda c: list(c.pipe().stream("Hi.", c.prompt, options=FAST, chunk=5)),
       OptionError, "chunk"),
    _r("threads-negative", lambda c: open_pipeline(c.tmp / "nowhere", threads=-2), OptionError, "threads"),
    _r("backend-unknown", lambda c: open_pipeline(c.tmp / "nowhere", backend="tensorflow"), OptionError, "backend"),
    # ---- text
    _r("text-empty", lambda c: c.pipe().synthesize("  ", c.prompt, options=FAST), TextError, "empty text"),
    _r("text-control-only", lambda c: c.pipe().synthesize("\x00\u200b", c.prompt, options=FAST), TextError, "empty"),
    _r("text-not-a-string", lambda c: c.pipe().synthesize(42, c.prompt, options=FAST), TextError, "string"),
    _r("segment-over-the-table", lambda c: c.pipe().synthesize("Hi.", c.prompt, options=FAST.replace(
        max_text_tokens_per_segment=121)), OptionError, "max_text_tokens_per_segment", "[1, 120]"),
    # ---- audio
    _r("speaker-missing", lambda c: c.pipe().synthesize("Hi.", c.tmp / "no.wav", options=FAST), AudioError,
       "no.wav", "not found"),
    _r("speaker-not-audio", lambda c: c.pipe().synthesize("Hi.", (c.tmp / "x.wav", (c.tmp / "x.wav").write_text("x"))[0],
                                                          options=FAST), AudioError, "x.wav", "cannot read"),
    _r("speaker-too-short", lambda c: c.pipe().synthesize("Hi.", c.wav(0.4), options=FAST), AudioError, "p.wav",
       "at least 0.5 s"),
    _r("speaker-nan", lambda c: c.pipe().synthesize("Hi.", c.wav(1.0, data=np.full(22050, np.nan, np.float32)),
                                                    options=FAST), AudioError, "NaN"),
    _r("speaker-an-array", lambda c: c.pipe().synthesize("Hi.", np.zeros(22050), options=FAST), OptionError,
       "speaker"),
    _r("emotion-audio-too-short", lambda c: c.pipe().synthesize("Hi.", c.prompt, emotion_audio=c.wav(0.3, 16000, "e.wav"),
                                                                options=FAST), AudioError, "e.wav", "0.5 s"),
    # ---- voices
    _r("voice-name-empty", lambda c: c.pipe().save_voice(c.tmp, "", c.prompt), OptionError, "voice name"),
    _r("voice-name-escapes", lambda c: c.pipe().save_voice(c.tmp, "../x", c.prompt), OptionError, "'../x'"),
    _r("voice-name-path", lambda c: c.pipe().load_voice(c.tmp, "a/b"), OptionError, "'a/b'"),
    _r("voice-name-hidden", lambda c: c.pipe().save_voice(c.tmp, ".x", c.prompt), OptionError, "'.x'"),
    _r("voice-not-found", lambda c: c.pipe().load_voice(c.tmp, "ghost"), VoiceError, "ghost", "not found"),
    _r("voice-json-a-list", voice_json(lambda d: (d / "a.json").write_text("[]")), VoiceError, "a.json",
       "JSON object"),
    _r("voice-tensors-changed", voice_json(lambda d: flip_bytes(d / "a.safetensors", 4)), VoiceError,
       "a.safetensors", "does not match"),
    _r("voice-wrong-shape", wrong_voice_tensor, VoiceError, "'style'", "re-create"),
    _r("voices-dir-a-file", lambda c: c.pipe().save_voice((c.tmp / "f", (c.tmp / "f").write_text("x"))[0], "a",
                                                          c.prompt), WriteError, "is not a directory"),
    _r("voice-file-a-symlink", symlinked_voice, WriteError, "a.safetensors", "symbolic link"),
    # ---- outputs
    _r("out-fifo", special_file("fifo"), WriteError, "fifo", "a FIFO"),
    _r("out-symlink", special_file("symlink"), WriteError, "symlink", "symbolic link"),
    _r("out-directory", special_file("directory"), WriteError, "directory", "is a directory"),
    _r("out-char-device", special_file("chardev"), WriteError, "chardev", "character device"),
    _r("out-under-a-file", lambda c: write_text_atomic((c.tmp / "f", (c.tmp / "f").write_text("x"))[0] / "r.json",
                                                       "{}"), WriteError, "f is not a directory"),
    _r("out-disk-full", enospc, WriteError, "o.wav", "no space left"),
    # ---- engines
    _r("engines-missing", lambda c: open_pipeline(c.tmp / "nowhere"), EngineError, "no manifest.json"),
    _r("manifest-a-list", lambda c: c.pipe(c.manifest(lambda m: [m])), EngineError, "JSON object"),
    _r("manifest-no-stages", lambda c: c.pipe(c.manifest(lambda m: {k: v for k, v in m.items() if k != "stages"})),
       EngineError, "'stages'"),
    _r("manifest-string-schema", lambda c: c.pipe(c.manifest(lambda m: {**m, "schema_version": "2"})), EngineError,
       "schema_version must be an integer", "'2'"),
    _r("manifest-not-json", damaged(lambda d: (d / "manifest.json").write_text("{")), EngineError, "not valid JSON"),
    _r("manifest-stage-a-list", lambda c: c.pipe(c.manifest(lambda m: {**m, "stages": {**m["stages"], "bigvgan": []}})),
       EngineError, "stage 'bigvgan'"),
    _r("manifest-points-outside", lambda c: c.pipe(c.manifest(lambda m: {**m, "stages": {**m["stages"], "bigvgan": {
        **m["stages"]["bigvgan"], "files": {"../bigvgan.onnx": "0"}}}})), EngineError, "plain file names"),
    _r("manifest-no-host-files", lambda c: c.pipe(c.manifest(lambda m: {k: v for k, v in m.items() if k != "host_files"})),
       IntegrityError, "records no hash", "config.yaml"),
    _r("graph-flipped-bytes", damaged(lambda d: flip_bytes(d / "bigvgan.onnx"), "bigvgan"), IntegrityError,
       "bigvgan.onnx", "does not match"),
    _r("graph-from-another-build", swapped, IntegrityError, "vq2emb.onnx", "another build"),
    _r("directory-mixed-from-two-builds", mixed, IntegrityError, "mixes two builds", "stage vq2emb", "'semantic_codec'"),
    _r("graph-deleted", damaged(lambda d: (d / "dit_step.onnx").unlink(), "dit_step"), IntegrityError,
       "dit_step.onnx", "missing"),
    _r("graph-truncated", damaged(lambda d: truncate(d / "gpt_decode.onnx"), "gpt_decode"), IntegrityError,
       "gpt_decode.onnx", "bytes, the manifest records"),
    _r("host-data-truncated", damaged(lambda d: truncate(d / "host_data.safetensors")), IntegrityError,
       "host_data.safetensors"),
    _r("config-changed", damaged(lambda d: (d / "config.yaml").write_text("version: '2.0'\n")), IntegrityError,
       "config.yaml"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, ctx, monkeypatch):
    with pytest.raises(row.error) as info:
        row.call(ctx, monkeypatch) if row.call.__code__.co_argcount == 2 else row.call(ctx)
    assert type(info.value) is row.error, f"{type(info.value).__name__}: {info.value}"
    msg = str(info.value)
    assert "\n" not in msg, msg
    for word in row.names:
        assert word in msg, f"{word!r} not in {msg!r}"


def test_accepted_edge_values_pass_the_same_rules():
    """What the rules must not refuse: numpy numbers, an all-zero vector, the range ends."""
    RunOptions(emotion_vector=np.full(8, 0.125, np.float32), emo_alpha=np.float64(0.0), seed=np.int64(3),
               diffusion_steps=1, cfg_rate=0).validated()
    RunOptions(emotion_vector=V8).validated()
    SamplingOptions(num_beams=np.int32(2), top_p=1.0, top_k=0, seed=0).validated()
    ChunkPlan(1, 0), ChunkPlan(5, 5)
