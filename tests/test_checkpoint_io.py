"""The shared checkpoint helpers: clear errors naming file and key, weight norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from indextts_trt.reference.checkpoint_io import (
    CheckpointError,
    expect_mapping,
    fold_weight_norm,
    fold_weight_norm_keys,
    load_strict,
    safetensors_load,
    safetensors_save,
    split_weight_norm,
    torch_load,
    torch_save,
    unfold_weight_norm_keys,
)


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 5)
        self.b = nn.Conv1d(5, 7, 3)


def test_load_strict_names_missing_unknown_and_wrong_shape():
    m = Two()
    sd = dict(m.state_dict())
    sd.pop("a.bias")
    sd["c.weight"] = torch.zeros(1)
    sd["b.weight"] = torch.zeros(7, 5, 2)
    with pytest.raises(CheckpointError) as e:
        load_strict(m, sd, "x.pth")
    msg = str(e.value)
    assert "x.pth" in msg and "a.bias" in msg and "c.weight" in msg and "b.weight: file (7, 5, 2) vs model (7, 5, 3)" in msg


def test_load_strict_ignores_listed_legacy_keys_and_loads_values():
    src, dst = Two(), Two()
    sd = dict(src.state_dict())
    sd["gpt.h.0.attn.bias"] = torch.ones(1)
    load_strict(dst, sd, "x.pth", ignore_unexpected=("gpt.h.",))
    assert torch.equal(dst.a.weight, src.a.weight)


def test_torch_load_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nope.pth"):
        torch_load(tmp_path / "nope.pth", "gpt checkpoint")
    good = tmp_path / "good.pth"
    torch_save({"w": torch.arange(1000.0)}, good)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="trunc.pth is truncated or corrupt"):
        torch_load(trunc)
    assert torch.equal(torch_load(good)["w"], torch.arange(1000.0))


def test_safetensors_errors_name_the_file(tmp_path):
    p = tmp_path / "m.safetensors"
    safetensors_save({"x": torch.randn(4, 3)}, p)
    assert safetensors_load(p)["x"].shape == (4, 3)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(p.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        safetensors_load(bad)


def test_expect_mapping():
    with pytest.raises(CheckpointError, match="expected a dict with key 'net'"):
        expect_mapping({"model": {}}, "s2mel.pth", "net")
    assert expect_mapping({"net": {"a": 1}}, "s2mel.pth", "net") == {"a": 1}


@pytest.mark.parametrize("make", [lambda: nn.Conv1d(6, 5, 3), lambda: nn.Linear(4, 9), lambda: nn.ConvTranspose1d(6, 4, 5)])
def test_weight_norm_fold_matches_torch(make):
    torch.manual_seed(0)
    m = make()
    wn = torch.nn.utils.parametrizations.weight_norm(m, dim=0)
    g = wn.parametrizations.weight.original0.detach()
    v = wn.parametrizations.weight.original1.detach()
    torch.nn.init.normal_(g)  # make g differ from ||v|| so the test would catch a missing factor
    with torch.no_grad():
        wn.parametrizations.weight.original0.copy_(g)
    assert torch.allclose(fold_weight_norm(g, v, 0), wn.weight.detach(), atol=1e-6)
    g2, v2 = split_weight_norm(wn.weight.detach(), 0)
    assert torch.allclose(fold_weight_norm(g2, v2, 0), wn.weight.detach(), atol=1e-6)


def test_weight_norm_keys_round_trip():
    sd = {"conv.weight": torch.randn(5, 3, 2), "conv.bias": torch.randn(5), "lin.weight": torch.randn(4, 4)}
    wn = unfold_weight_norm_keys(sd, ["conv"])
    assert set(wn) == {"conv.weight_g", "conv.weight_v", "conv.bias", "lin.weight"}
    assert wn["conv.weight_g"].shape == (5, 1, 1)
    back = fold_weight_norm_keys(wn)
    assert torch.allclose(back["conv.weight"], sd["conv.weight"], atol=1e-6)
    with pytest.raises(CheckpointError, match="conv.weight_g"):
        fold_weight_norm_keys({"conv.weight_v": torch.ones(2, 2)})
