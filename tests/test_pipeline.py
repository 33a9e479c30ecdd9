"""End-to-end reference synthesis on tiny random-weight checkpoints, and init-checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from indextts_trt.reference.init_checkpoints import init_checkpoints
from indextts_trt.reference.pipeline import ReferencePipeline
from indextts_trt.runtime.audio import join_segments
from indextts_trt.runtime.audio import AudioError
from indextts_trt.runtime.indextts2.config import load_config
from indextts_trt.runtime.indextts2.layout import CheckpointLayout
from indextts_trt.runtime.options import RunOptions as SynthesisOptions
from indextts_trt.runtime.sampling import SamplingOptions
from indextts_trt.runtime.text import TextError

TEXT = "Hello there. This is a test of the toolchain, with two sentences."


@pytest.fixture(scope="module")
def pipe(tiny_ckpt):
    return ReferencePipeline(tiny_ckpt)


def test_checkpoint_dir_is_complete_and_reloads(tiny_ckpt):
    cfg = CheckpointLayout(tiny_ckpt).check()
    assert cfg == load_config(tiny_ckpt / "config.yaml") and cfg.gpt.model_dim == 15
    s2 = torch.load(tiny_ckpt / "s2mel.pth", weights_only=True)
    assert set(s2["net"]) == {"cfm", "length_regulator", "gpt_layer"}
    assert "generator" in torch.load(tiny_ckpt / "hf_cache/bigvgan/bigvgan_generator.pt", weights_only=True)


def test_init_refuses_to_overwrite_and_leaves_nothing_on_failure(tiny_ckpt, tmp_path, monkeypatch):
    with pytest.raises(FileExistsError):
        init_checkpoints("tiny", tiny_ckpt, progress=False)
    import indextts_trt.reference.init_checkpoints as ic

    def boom(*a, **k):
        raise RuntimeError("disk full")

    steps = list(ic.STEPS)
    steps[3] = ic.WriteStep("s2mel.pth", boom)
    monkeypatch.setattr(ic, "STEPS", tuple(steps))
    with pytest.raises(RuntimeError, match="disk full"):
        init_checkpoints("tiny", tmp_path / "new", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_synthesis_is_deterministic_and_joined_as_upstream(pipe, tiny_ckpt, prompt_wav):
    opts = SynthesisOptions(seed=7, max_text_tokens_per_segment=12, diffusion_steps=4)
    a = pipe.synthesize(TEXT, prompt_wav, options=opts)
    b = ReferencePipeline(tiny_ckpt).synthesize(TEXT, prompt_wav, options=opts)  # a fresh pipeline
    assert len(a.segments) >= 2
    assert np.array_equal(a.wav, b.wav)  # bit-identical across runs with the same seed
    assert all(np.array_equal(x.codes, y.codes) for x, y in zip(a.segments, b.segments))
    seg0 = len(a.segments[0].wav)
    assert seg0 == 256 * a.segments[0].mel.shape[-1]
    assert a.segments[0].mel.shape[-1] == int(np.float32(len(a.segments[0].codes)) * np.float32(1.72))
    assert np.all(a.wav[seg0:seg0 + 4410] == 0)  # 200 ms of silence between segments
    assert a.sample_rate == 22050 and a.wav.dtype == np.int16
    c = pipe.synthesize(TEXT, prompt_wav, options=SynthesisOptions(seed=8, max_text_tokens_per_segment=12,
                                                                   diffusion_steps=4))
    assert not np.array_equal(a.wav, c.wav)


def test_emotion_inputs_change_the_output(pipe, prompt_wav, tmp_path):
    base = SynthesisOptions(seed=1, diffusion_steps=2, sampling=SamplingOptions.greedy(max_new_tokens=30))
    plain = pipe.synthesize("Hello.", prompt_wav, options=base)
    vec = pipe.synthesize("Hello.", prompt_wav, options=SynthesisOptions(
        seed=1, diffusion_steps=2, sampling=SamplingOptions.greedy(max_new_tokens=30),
        emotion_vector=[0, 0, 0.8, 0, 0, 0, 0, 0], emo_alpha=0.5))
    emo = tmp_path / "emo.wav"
    sf.write(emo, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    aud = pipe.synthesize("Hello.", prompt_wav, emotion_audio=emo, options=base)
    assert not np.array_equal(plain.segments[0].mel, vec.segments[0].mel)
    assert not np.array_equal(plain.segments[0].mel, aud.segments[0].mel)


def test_bad_inputs(pipe, prompt_wav, tmp_path):
    with pytest.raises(TextError, match="empty text"):
        pipe.synthesize("   ", prompt_wav)
    with pytest.raises(AudioError, match="not found"):
        pipe.synthesize("Hi.", tmp_path / "missing.wav")
    (tmp_path / "x.wav").write_text("nope")
    with pytest.raises(AudioError, match="cannot read"):
        pipe.synthesize("Hi.", tmp_path / "x.wav")


def test_join_segments():
    out = join_segments([np.ones(3, np.float32), -np.ones(2, np.float32)], 200)
    assert len(out) == 3 + 4410 + 2 and out[0] == 32767 and out[-1] == -32767


def test_tts_run_cli_writes_wav_and_report(tiny_ckpt, tmp_path):
    out, rep = tmp_path / "o.wav", tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "indextts_trt.runtime.cli", "--backend", "torch", "--checkpoints", str(tiny_ckpt),
                        "--text", "Hi there.", "--out", str(out), "--report", str(rep), "--diffusion-steps", "2",
                        "--max-codes", "20"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "RTF" in r.stdout and out.is_file()
    report = json.loads(rep.read_text())
    assert report["audio_seconds"] > 0 and set(report["stage_seconds"]) >= {"gpt_generate", "s2mel", "bigvgan"}
    bad = subprocess.run([sys.executable, "-m", "indextts_trt.runtime.cli", "--backend", "torch", "--checkpoints", str(tiny_ckpt),
                          "--emotion-vector", "1,2", "--out", str(tmp_path / "z.wav")], capture_output=True, text=True)
    assert bad.returncode != 0 and "8 weights" in bad.stderr and not (tmp_path / "z.wav").exists()
