"""The model-variant seam is real: a second model family, defined in this file only (IndexTTS-2 with
its vocoder swapped for a toy one and a stage added after it), goes through the generic build,
parity gate, manifest and pipeline without any IndexTTS-2 file knowing about it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from indextts_trt.export.build import build
from indextts_trt.export.indextts2 import EXPORT as INDEXTTS2
from indextts_trt.export.variant import (
    ExportVariant,
    ModelSource,
    StageSource,
    register_export_variant,
    unregister_export_variant,
)
from indextts_trt.runtime.indextts2 import IndexTTS2
from indextts_trt.runtime.indextts2.layout import CheckpointLayout
from indextts_trt.runtime.indextts2.pipeline import IndexTTS2Pipeline
from indextts_trt.runtime.indextts2.stages import MAX_FP32, WAVE
from indextts_trt.runtime.options import RunOptions
from indextts_trt.runtime.sampling import SamplingOptions
from indextts_trt.runtime.spec import Dim, StageSpec, TensorSpec
from indextts_trt.runtime.variant import VariantError, detect_variant, register_variant, unregister_variant

VERSION = "toy-1"


class ToyModel(nn.Module):
    """The swapped vocoder (one transposed conv: a frame → hop samples) and the added gain stage."""

    def __init__(self, n_mels: int, hop: int):
        super().__init__()
        self.up = nn.ConvTranspose1d(n_mels, 1, kernel_size=hop, stride=hop)
        self.gain = nn.Parameter(torch.tensor([0.5]))


class ToyVocoder(nn.Module):
    def __init__(self, m: ToyModel):
        super().__init__()
        self.m = m

    def forward(self, mel):
        return torch.tanh(self.m.up(mel))


class ToyGain(nn.Module):
    def __init__(self, m: ToyModel):
        super().__init__()
        self.m = m

    def forward(self, wav):
        return wav * self.m.gain


class ToyLayout(CheckpointLayout):
    def required_files(self, cfg):
        files = {k: v for k, v in super().required_files(cfg).items() if not k.startswith("bigvgan")}
        return {**files, "toy": self.root / "toy.pt"}


class ToyVariant(IndexTTS2):
    name = "toy-tts"
    config_versions = (VERSION,)

    def layout(self, root):
        return ToyLayout(root)

    def stage_specs(self, cfg):
        specs = {k: v for k, v in super().stage_specs(cfg).items() if k != "bigvgan"}
        t_mel = super().stage_specs(cfg)["bigvgan"].dim_map["T_mel"]
        hop = cfg.hop_length
        specs["toy_vocoder"] = StageSpec(
            "toy_vocoder", "toy vocoder", inputs=(TensorSpec("mel", "float32", (1, cfg.n_mels, "T_mel")),),
            outputs=(TensorSpec("wav", "float32", (1, 1, "T_wav")),),
            dims=(t_mel, Dim("T_wav", hop, hop * t_mel.opt, hop * t_mel.max)), derived={"T_wav": f"{hop} * T_mel"},
            tolerances={"wav": WAVE})
        specs["toy_gain"] = StageSpec(
            "toy_gain", "a learned gain", inputs=(TensorSpec("wav", "float32", (1, 1, "T_wav")),),
            outputs=(TensorSpec("out", "float32", (1, 1, "T_wav")),), dims=(specs["toy_vocoder"].dim_map["T_wav"],),
            tolerances={"out": MAX_FP32})
        return specs

    def pipeline_class(self):
        return ToyPipeline


class ToyPipeline(IndexTTS2Pipeline):
    def vocode(self, mel):
        return self.run("toy_gain", wav=self.run("toy_vocoder", mel=mel)["wav"])["out"][0, 0]


def _load_toy(lay, cfg):
    m = ToyModel(cfg.n_mels, cfg.hop_length)
    m.load_state_dict(torch.load(lay.root / "toy.pt", weights_only=True))
    return m.eval()


TOY = ToyVariant()
TOY_EXPORT = ExportVariant(
    runtime=TOY, models={**INDEXTTS2.models, "toy": ModelSource(("config", "toy"), _load_toy)},
    sources={**{k: v for k, v in INDEXTTS2.sources.items() if k != "bigvgan"},
             "toy_vocoder": StageSource("toy", ToyVocoder), "toy_gain": StageSource("toy", ToyGain)},
    write_host_files=INDEXTTS2.write_host_files, init_checkpoints=INDEXTTS2.init_checkpoints,
    code_files=INDEXTTS2.code_files, host_models=INDEXTTS2.host_models)


@pytest.fixture(scope="module")
def toy(tiny_ckpt, tmp_path_factory):
    register_variant(TOY)
    register_export_variant(TOY_EXPORT)
    root = tmp_path_factory.mktemp("toy") / "ckpt"
    shutil.copytree(tiny_ckpt, root)
    shutil.rmtree(root / "hf_cache" / "bigvgan")  # the swapped stage's model is gone
    cfg_path = root / "config.yaml"
    data = yaml.safe_load(cfg_path.read_text())
    data["version"] = VERSION
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
    torch.manual_seed(0)
    torch.save(ToyModel(data["s2mel"]["DiT"]["in_channels"], 256).state_dict(), root / "toy.pt")
    out = root.parent / "engines"
    rep = build(root, out, points=("opt", "min"), progress=False)
    yield root, out, rep
    unregister_variant(TOY.name)
    unregister_export_variant(TOY.name)


def test_the_config_chooses_the_variant(toy):
    root, _, _ = toy
    assert detect_variant(yaml.safe_load((root / "config.yaml").read_text())) is TOY
    known = r"version '9\.9' matches no known model variant; known: .*indextts-2 \(version 2\.0\)"
    with pytest.raises(VariantError, match=known):
        detect_variant({"version": "9.9"})


def test_generic_build_exports_and_gates_the_new_stages(toy):
    _, out, rep = toy
    order = list(TOY.stage_specs(TOY.load_config(out)))
    assert rep.ok and rep.built == order and order[-2:] == ["toy_vocoder", "toy_gain"] and "bigvgan" not in order
    checked = {(c.stage, c.point) for c in rep.checks}
    assert {("toy_vocoder", p) for p in ("opt", "min")} <= checked and ("toy_gain", "min") in checked
    m = json.loads((out / "manifest.json").read_text())
    assert m["variant"] == "toy-tts" and list(m["stages"]) == order
    assert (out / "toy_vocoder.onnx").is_file() and not (out / "bigvgan.onnx").exists()


def test_generic_pipeline_runs_the_variant_sequence(toy, prompt_wav):
    from indextts_trt.runtime.pipeline import open_pipeline

    root, out, _ = toy
    opts = RunOptions(sampling=SamplingOptions.greedy(max_new_tokens=12), diffusion_steps=2)
    with open_pipeline(out) as pipe:
        assert type(pipe) is ToyPipeline
        res = pipe.synthesize("Hello there.", prompt_wav, options=opts)
        assert {"toy_vocoder", "toy_gain"} <= set(pipe._runners) and "bigvgan" not in pipe._runners
    toy_model = _load_toy(TOY.layout(root), TOY.load_config(root))
    for seg in res.segments:  # the swapped and added stages computed what their reference computes
        with torch.no_grad():
            ref = ToyGain(toy_model)(ToyVocoder(toy_model)(torch.from_numpy(seg.mel)))[0, 0].numpy()
        np.testing.assert_allclose(seg.wav, ref, atol=1e-5, rtol=1e-5)
        assert len(seg.wav) == 256 * seg.mel.shape[-1]
