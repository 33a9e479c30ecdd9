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


@pytest.fixture(scope="session")
def tiny_ckpt_25(tmp_path_factory):
    """Tiny random IndexTTS-2.5 checkpoints in its released layout (≈10 s to write)."""
    from indextts_trt.export.variant import export_variant

    out = tmp_path_factory.mktemp("ckpt25") / "tiny"
    export_variant("indextts-2.5").init_checkpoints("tiny", out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def ref_pipe_25(tiny_ckpt_25):
    from indextts_trt.reference.v25.pipeline import ReferencePipelineV25

    return ReferencePipelineV25(tiny_ckpt_25)


@pytest.fixture(scope="session")
def engine_dir_25(tiny_ckpt_25, tmp_path_factory):
    """The tiny 2.5 checkpoints exported behind the parity gate: every stage at its export point
    (≈1.5 min), then the stages whose graphs IndexTTS-2's build does not already gate at all four
    points (new adapters or 2.5's own ranges; the DiT and BigVGAN maxima, the slow points, are
    2.0's graph code) re-judged at all four (a few seconds, nothing re-exported)."""
    from indextts_trt.export.build import ALL_POINTS, build

    out = tmp_path_factory.mktemp("rt_engines25")
    assert build(tiny_ckpt_25, out, points=("opt",), progress=False).ok
    gated = ["speaker_projection", "gpt_prefill", "gpt_decode", "codec_decode", "length_regulator"]
    rep = build(tiny_ckpt_25, out, stages=gated, points=ALL_POINTS, progress=False)
    assert rep.ok and sorted(rep.rejudged) == sorted(gated), (rep.built, rep.rejudged)
    return out


@pytest.fixture(scope="session")
def ort_pipe_25(engine_dir_25):
    from indextts_trt.runtime.pipeline import open_pipeline

    with open_pipeline(engine_dir_25, threads=2) as pipe:
        yield pipe
