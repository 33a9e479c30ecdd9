"""BigVGAN v2: filters, SnakeBeta, anti-aliased resampling, weight norm, lengths, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from indextts_trt.reference.bigvgan import (
    FULL_CONFIG,
    TINY_OVERRIDES,
    BigVGAN,
    SnakeBeta,
    UpSample1d,
    DownSample1d,
    kaiser_sinc_filter1d,
    load_bigvgan,
    write_random_bigvgan,
)
from indextts_trt.reference.checkpoint_io import CheckpointError, torch_save


@pytest.fixture(scope="module")
def vdir(tmp_path_factory, tiny_cfg):
    d = tmp_path_factory.mktemp("bv") / "bigvgan"
    write_random_bigvgan(tiny_cfg, d, 0, "tiny")
    return d


def test_kaiser_filter_against_scipy():
    signal = pytest.importorskip("scipy.signal")
    f = kaiser_sinc_filter1d(0.25, 0.3, 12).flatten().double().numpy()
    a = 2.285 * 5 * np.pi * 1.2 + 7.95
    beta = 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21) if 21 <= a <= 50 else 0.1102 * (a - 8.7)
    t = np.arange(-6, 6) + 0.5
    expect = 0.5 * signal.windows.kaiser(12, beta, sym=True) * np.sinc(0.5 * t)
    np.testing.assert_allclose(f, expect / expect.sum(), atol=1e-6)
    assert abs(f.sum() - 1) < 1e-6


def test_snakebeta_log_scale():
    s = SnakeBeta(3)
    s.alpha.data = torch.tensor([0.1, -0.2, 0.3])
    s.beta.data = torch.tensor([-0.1, 0.2, 0.0])
    s.prepare()
    x = torch.randn(2, 3, 7)
    a, b = s.alpha.exp()[None, :, None], s.beta.exp()[None, :, None]
    torch.testing.assert_close(s(x), x + 1 / (b + 1e-9) * torch.sin(x * a) ** 2)


def test_up_and_down_sampling_against_direct_computation():
    x = torch.randn(1, 3, 20)
    up = UpSample1d(3)
    filt = up.filter[0, 0]
    ref = []
    for c in range(3):  # one channel at a time: replicate pad 5, transposed conv stride 2, ×2, crop 15
        xc = F.pad(x[:, c:c + 1], (5, 5), mode="replicate")
        y = 2 * F.conv_transpose1d(xc, filt.view(1, 1, -1), stride=2)
        ref.append(y[..., 15:-15])
    torch.testing.assert_close(up(x), torch.cat(ref, 1))
    assert up(x).shape[-1] == 40
    down = DownSample1d(3)
    xp = F.pad(x, (5, 6), mode="replicate")
    ref = torch.cat([F.conv1d(xp[:, c:c + 1], down.lowpass.filter, stride=2) for c in range(3)], 1)
    torch.testing.assert_close(down(x), ref)


@pytest.mark.parametrize("t", [1, 7, 20])
def test_output_length_and_range(vdir, tiny_cfg, t):
    m = load_bigvgan(vdir, tiny_cfg)
    with torch.no_grad():
        y = m(torch.randn(1, 80, t))
    assert y.shape == (1, 1, 256 * t) and y.abs().max() <= 1.0 and torch.isfinite(y).all()


def test_weight_norm_folded_like_torch_for_transposed_conv(vdir, tiny_cfg):
    ck = torch.load(vdir / "bigvgan_generator.pt", weights_only=True)["generator"]
    g, v = ck["ups.0.0.weight_g"], ck["ups.0.0.weight_v"]
    assert g.shape == (48, 1, 1) and v.shape == (48, 24, 16)  # ConvTranspose1d: [in, out, k], g over dim 0
    conv = torch.nn.ConvTranspose1d(48, 24, 16, 8, padding=4)
    wn = torch.nn.utils.parametrizations.weight_norm(conv, dim=0)
    with torch.no_grad():
        wn.parametrizations.weight.original0.copy_(g)
        wn.parametrizations.weight.original1.copy_(v)
    m = load_bigvgan(vdir, tiny_cfg)
    torch.testing.assert_close(m.ups[0][0].weight, wn.weight.detach())


def test_filters_are_expanded_once(vdir, tiny_cfg):
    m = load_bigvgan(vdir, tiny_cfg)
    up = m.resblocks[0].activations[0].upsample
    assert up.weight.shape == (m.ups[0][0].out_channels, 1, 12)  # depthwise weight built at construction
    traced = torch.jit.trace(m, torch.randn(1, 80, 5), check_trace=False)
    torch.testing.assert_close(traced(torch.randn(1, 80, 5) * 0), m(torch.zeros(1, 80, 5)))


def test_files_and_errors(vdir, tiny_cfg, tmp_path):
    h = json.loads((vdir / "config.json").read_text())
    assert h["upsample_rates"] == TINY_OVERRIDES["upsample_rates"] and h["use_tanh_at_final"] is False
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**h, "num_mels": 100}))
    with pytest.raises(CheckpointError, match="num_mels 100"):
        load_bigvgan(bad, tiny_cfg)
    (bad / "config.json").write_text(json.dumps(h))
    ck = torch.load(vdir / "bigvgan_generator.pt", weights_only=True)
    ck["generator"].pop("conv_post.weight_g")
    torch_save(ck, bad / "bigvgan_generator.pt")
    with pytest.raises(CheckpointError, match="conv_post.weight_g"):
        load_bigvgan(bad, tiny_cfg)


def test_full_size_layout():
    with torch.device("meta"):
        m = BigVGAN(FULL_CONFIG)
    sd = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert abs(sum(p.numel() for p in m.parameters()) / 1e6 - 112.2) < 0.1
    assert sd["ups.0.0.weight"] == (1536, 768, 8) and sd["resblocks.17.convs1.2.weight"] == (24, 24, 11)
    assert sd["activation_post.act.alpha"] == (24,) and sd["conv_post.weight"] == (1, 24, 7)
    assert "conv_post.bias" not in sd and sd["resblocks.0.activations.5.downsample.lowpass.filter"] == (1, 1, 12)
