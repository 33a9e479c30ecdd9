"""Shared fixtures. Tests use the tiny random-weight configuration; nothing is downloaded."""

from __future__ import annotations

import os

import pytest

# Two cores in CI: keep torch/ORT from oversubscribing when tests run.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_cfg():
    from indextts_trt.runtime.indextts2.config import tiny_config

    return tiny_config()


@pytest.fixture(scope="session")
def full_cfg():
    from indextts_trt.runtime.indextts2.config import full_config

    return full_config()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A complete tiny random-weight checkpoint directory in the released layout (≈5 s to write)."""
    from indextts_trt.reference.init_checkpoints import init_checkpoints

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    init_checkpoints("tiny", out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def prompt_wav(tmp_path_factory):
    import soundfile as sf

    from indextts_trt.runtime.demo_audio import synth_voice_prompt

    p = tmp_path_factory.mktemp("audio") / "prompt.wav"
    sf.write(p, synth_voice_prompt(2.5, 22050, seed=3), 22050)
    return p


@pytest.fixture(scope="session")
def engine_dir(tiny_ckpt, tmp_path_factory):
    """Tiny checkpoints exported to ONNX behind the parity gate (export point only, ≈1 min)."""
    from indextts_trt.export.build import build

    out = tmp_path_factory.mktemp("rt_engines")
    assert build(tiny_ckpt, out, points=("opt",), progress=False).ok
    return out


@pytest.fixture(scope="session")
def ort_pipe(engine_dir):
    from indextts_trt.runtime.pipeline import open_pipeline

    with open_pipeline(engine_dir, threads=2) as pipe:
        yield pipe
