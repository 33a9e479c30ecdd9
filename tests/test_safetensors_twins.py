"""`tts-export convert`: the nested-v1 flattening is reversible, convert + load gives bit-identical
tensors and models, the loaders prefer the twin, a stale twin is caught; and the random w2v-bert
file has exactly the keys transformers' Wav2Vec2BertModel has for the released config."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from indextts_trt.export.convert import convert, identical
from indextts_trt.reference.checkpoint_io import (
    CheckpointError,
    flatten_nested,
    load_pickled,
    save_nested_safetensors,
    torch_load,
    unflatten_nested,
)


def test_nesting_round_trips_exactly(tmp_path):
    nan = torch.tensor([float("nan"), -0.0, math.inf]).view(torch.int32)
    nan[0] = 0x7FC00123  # a NaN payload
    obj = {"net": {"cfm": {"a.weight_g": torch.randn(3, 1, 1), "a.weight_v": torch.randn(3, 4, 5)},
                   "empty": {}, "gpt_layer": {"0.weight": torch.arange(6, dtype=torch.bfloat16).view(2, 3)}},
           "ema": [torch.ones(2), (torch.zeros(1, dtype=torch.int64), 3)], "iters": 7, "lr": 1e-4, "tag": "x",
           "none": None, "flag": True, "bits": nan.view(torch.float32), "scalar": torch.tensor(2.5)}
    tensors, meta = flatten_nested(obj, "t")
    assert sorted(tensors) == sorted(["net/cfm/a.weight_g", "net/cfm/a.weight_v", "net/gpt_layer/0.weight",
                                      "ema/0", "ema/1/0", "bits", "scalar"])
    back = unflatten_nested(tensors, meta, "t")
    assert identical(obj, back) is None
    assert type(back["ema"]) is list and type(back["ema"][1]) is tuple and back["net"]["empty"] == {}
    save_nested_safetensors(obj, tmp_path / "x.safetensors", "t")
    from safetensors.torch import load_file

    from indextts_trt.reference.checkpoint_io import safetensors_metadata

    again = unflatten_nested(load_file(tmp_path / "x.safetensors"), safetensors_metadata(tmp_path / "x.safetensors"), "t")
    assert identical(obj, again) is None
    # a bare tensor (feat1.pt) and tied weights (shared storage, which safetensors refuses as such)
    t = torch.randn(4, 3)
    assert identical(unflatten_nested(*flatten_nested(t, "t"), "t"), t) is None
    save_nested_safetensors({"a": t, "b": t}, tmp_path / "tied.safetensors", "t")
    # identical() itself notices one flipped bit
    u = t.clone()
    u.view(torch.int32)[0, 0] ^= 1
    assert identical({"a": t}, {"a": u}) == "'a': values differ"


@pytest.mark.parametrize("obj, phrase", [({"a/b": torch.zeros(1)}, "without '/'"), ({1: torch.zeros(1)}, "key 1"),
                                         ({"": torch.zeros(1)}, "non-empty"), ({"x": object()}, "'x' is a object")])
def test_what_safetensors_cannot_hold_is_refused_by_path(obj, phrase):
    with pytest.raises(CheckpointError, match=phrase):
        flatten_nested(obj, "f.pth")


def _models(ck: Path) -> dict[str, torch.nn.Module]:
    from indextts_trt.reference.bigvgan import load_bigvgan
    from indextts_trt.reference.campplus import load_campplus
    from indextts_trt.reference.s2mel import load_s2mel
    from indextts_trt.reference.unified_voice import load_emo_matrices, load_unified_voice
    from indextts_trt.reference.w2vbert import load_w2vbert
    from indextts_trt.runtime.indextts2.config import load_config

    cfg = load_config(ck / "config.yaml")
    spk, emo = load_emo_matrices(ck / "feat1.pt", ck / "feat2.pt", cfg)
    return {"gpt": load_unified_voice(ck / "gpt.pth", cfg), "s2mel": load_s2mel(ck / "s2mel.pth", cfg),
            "w2v": load_w2vbert(ck / "hf_cache/w2v-bert-2.0", ck / "wav2vec2bert_stats.pt", cfg),
            "campplus": load_campplus(ck / "hf_cache/campplus_cn_common.bin", cfg),
            "bigvgan": load_bigvgan(ck / "hf_cache/bigvgan", cfg),
            "emo": torch.nn.ParameterList([torch.nn.Parameter(t) for t in spk + emo])}


def test_convert_then_load_is_bit_identical(tiny_ckpt, tmp_path):
    ck = tmp_path / "ck"
    shutil.copytree(tiny_ckpt, ck)
    before = {k: m.state_dict() for k, m in _models(ck).items()}
    done = convert(ck)
    assert sorted(c.target.relative_to(ck).as_posix() for c in done) == sorted(
        ["gpt.safetensors", "s2mel.safetensors", "wav2vec2bert_stats.safetensors", "feat1.safetensors",
         "feat2.safetensors", "hf_cache/campplus_cn_common.safetensors", "hf_cache/bigvgan/bigvgan_generator.safetensors"])
    for c in done:  # what the loaders now read, against the pickle, tensor by tensor
        obj, read = load_pickled(c.source)
        assert read == c.target
        assert identical(torch_load(c.source), obj) is None, c.source
    s2 = load_pickled(ck / "s2mel.pth")[0]
    assert set(s2) >= {"net"} and any(k.endswith(".weight_g") for k in s2["net"]["cfm"])  # weight norm kept
    assert "generator" in load_pickled(ck / "hf_cache/bigvgan/bigvgan_generator.pt")[0]
    after = {k: m.state_dict() for k, m in _models(ck).items()}
    for name in before:
        assert identical(dict(before[name]), dict(after[name])) is None, name


def test_the_loaders_read_the_twin_first_and_verify_catches_a_stale_one(tiny_ckpt, tmp_path):
    from indextts_trt.export.verify import verify
    from indextts_trt.reference.unified_voice import load_emo_matrices
    from indextts_trt.runtime.indextts2.config import load_config

    ck = tmp_path / "ck"
    shutil.copytree(tiny_ckpt, ck)
    convert(ck)
    cfg = load_config(ck / "config.yaml")
    feat1 = torch.load(ck / "feat1.pt", weights_only=True)
    save_nested_safetensors(feat1 + 1, ck / "feat1.safetensors", "feat1.pt")  # a twin of other contents
    spk, _ = load_emo_matrices(ck / "feat1.pt", ck / "feat2.pt", cfg)
    assert torch.equal(torch.cat(spk), feat1 + 1)  # the twin won
    bad = {f.rel: " ".join(f.problems) for f in verify(ck).bad}
    assert list(bad) == ["feat1.safetensors"] and "stale" in bad["feat1.safetensors"]
    # errors name the file that was read
    save_nested_safetensors(torch.zeros(2, 2), ck / "feat1.safetensors", "feat1.pt")
    with pytest.raises(CheckpointError, match=r"feat1\.safetensors: expected"):
        load_emo_matrices(ck / "feat1.pt", ck / "feat2.pt", cfg)


def test_convert_cli(tiny_ckpt, tmp_path):
    ck = tmp_path / "ck"
    shutil.copytree(tiny_ckpt, ck)
    exe = str(Path(sys.executable).with_name("tts-export"))
    r = subprocess.run([exe, "convert", str(ck)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "7 safetensors twins written" in r.stdout, r.stderr
    r = subprocess.run([exe, "convert", str(ck), "--to", "onnx"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "only target format is safetensors" in r.stderr
    r = subprocess.run([exe, "convert", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not a checkpoint directory" in r.stderr


def test_w2vbert_file_has_exactly_the_released_keys(tiny_ckpt, tmp_path):
    """transformers' Wav2Vec2BertModel for the released config (mask_time_prob 0.05) owns
    masked_spec_embed, so save_pretrained writes it; our writer must too, and the loader must
    accept files with and without it."""
    from safetensors.torch import load_file, save_file
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    from indextts_trt.reference.w2vbert import FULL_CONFIG, load_w2vbert
    from indextts_trt.runtime.indextts2.config import load_config

    with torch.device("meta"):
        full = Wav2Vec2BertModel(Wav2Vec2BertConfig.from_dict(FULL_CONFIG)).state_dict()
    assert "masked_spec_embed" in full and tuple(full["masked_spec_embed"].shape) == (1024,)
    assert len(full) == 773 and sum(v.numel() for v in full.values()) == 580_493_120  # 2.32 GB in fp32
    d = tiny_ckpt / "hf_cache/w2v-bert-2.0"
    hf = json.loads((d / "config.json").read_text())
    with torch.device("meta"):
        want = Wav2Vec2BertModel(Wav2Vec2BertConfig.from_dict(hf)).state_dict()
    have = load_file(d / "model.safetensors")
    assert hf["mask_time_prob"] == 0.05 and "masked_spec_embed" in have
    assert sorted(have) == sorted(want)
    assert all(tuple(have[k].shape) == tuple(want[k].shape) for k in want)
    cfg = load_config(tiny_ckpt / "config.yaml")
    load_w2vbert(d, tiny_ckpt / "wav2vec2bert_stats.pt", cfg)
    old = tmp_path / "w2v"  # a file written before masked_spec_embed was: still accepted
    shutil.copytree(d, old)
    save_file({k: v for k, v in have.items() if k != "masked_spec_embed"}, old / "model.safetensors")
    load_w2vbert(old, tiny_ckpt / "wav2vec2bert_stats.pt", cfg)


def test_a_directory_of_safetensors_twins_alone_is_complete_and_builds(tiny_ckpt, tmp_path):
    """After convert, the pickles can go: the layout accepts the twins, and the build keys each
    graph by the file its loader read (the twin), so a changed twin rebuilds."""
    from indextts_trt.export.build import build
    from indextts_trt.runtime.files import PICKLE_SUFFIXES, sha256_file
    from indextts_trt.runtime.indextts2.layout import CheckpointLayout

    ck = tmp_path / "ck"
    shutil.copytree(tiny_ckpt, ck)
    convert(ck)
    for p in [p for p in ck.rglob("*") if p.suffix in PICKLE_SUFFIXES]:
        p.unlink()
    CheckpointLayout(ck).check()
    out = tmp_path / "e"
    rep = build(ck, out, stages=["gpt_layer"], points=("opt",), progress=False)
    assert rep.built == ["gpt_layer"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["checkpoints"]["files"]["s2mel"] == sha256_file(ck / "s2mel.safetensors")
