"""S2Mel: length regulator, DiT pieces (RoPE, time embedding, U-ViT skips, masks), CFM, files."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from indextts_trt.reference.cfm import cfm_inference
from indextts_trt.reference.checkpoint_io import CheckpointError, torch_save
from indextts_trt.reference.dit import TimestepEmbedder, apply_rope, rope_table
from indextts_trt.reference.length_regulator import nearest_indices
from indextts_trt.reference.s2mel import S2Mel, build_s2mel, load_s2mel, write_random_s2mel


@pytest.fixture(scope="module")
def s2(tiny_cfg):
    torch.manual_seed(0)
    return build_s2mel(tiny_cfg)


@pytest.mark.parametrize("t_in, t_out", [(5, 8), (7, 12), (10, 17), (100, 172), (13, 13), (9, 4), (6, 12)])
def test_nearest_gather_equals_interpolate(t_in, t_out):
    x = torch.randn(1, 3, t_in)
    ref = F.interpolate(x, size=t_out, mode="nearest")
    torch.testing.assert_close(x[..., nearest_indices(t_in, t_out)], ref)


def test_rope_is_interleaved_complex_rotation():
    x = torch.randn(1, 6, 2, 8)
    out = apply_rope(x, rope_table(6, 8))
    xc = torch.view_as_complex(x.reshape(1, 6, 2, 4, 2))
    freqs = 1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8)
    rot = torch.polar(torch.ones(6, 4), torch.outer(torch.arange(6).float(), freqs))
    expect = torch.view_as_real(xc * rot[None, :, None]).reshape(1, 6, 2, 8)
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-5)


def test_time_embedding_cos_first():
    te = TimestepEmbedder(6)
    t = torch.tensor([0.3])
    args = 1000 * 0.3 * torch.exp(-math.log(10000) * torch.arange(128) / 128)
    feat = torch.cat([torch.cos(args), torch.sin(args)])[None]
    torch.testing.assert_close(te(t), te.mlp(feat))


def test_uvit_skip_pattern(s2):
    tr = s2.estimator.transformer
    pops = []
    for i, layer in enumerate(tr.layers):
        layer.register_forward_pre_hook(lambda m, a, i=i: pops.append((i, a[4] is not None)))
    with torch.no_grad():
        tr(torch.randn(1, 4, 20), torch.randn(1, 1, 20), torch.zeros(1, 1, 1, 4))
    assert [i for i, has in pops if has] == [3, 4]  # depth 5: 3←1, 4←0; layer 2 gets none
    assert tr.emit == [0, 1] and tr.receive == [3, 4]


def test_key_mask_matches_separate_runs(s2, tiny_cfg):
    """A batch of two with the second padded gives, on its valid frames, what it gives alone —
    for the transformer; the WaveNet's convs see padded frames as upstream's do, so compare the
    transformer output."""
    est = s2.estimator
    T, n = 11, 7
    x = torch.randn(2, 80, T)
    t = torch.tensor([0.4, 0.4])
    style = torch.randn(2, tiny_cfg.style_dim)
    cond = torch.randn(2, T, 16)
    with torch.no_grad():
        c = est.t_embedder(t).unsqueeze(1)
        x_in = est.cond_x_merge_linear(torch.cat([x.transpose(1, 2), x.transpose(1, 2), est.cond_projection(cond),
                                                   style[:, None].expand(2, T, -1)], -1))
        bias = torch.zeros(2, 1, 1, T)
        bias[1, ..., n:] = -1e4
        both = est.transformer(x_in, c, bias)
        alone = est.transformer(x_in[1:, :n], c[1:], torch.zeros(1, 1, 1, n))
    torch.testing.assert_close(both[1, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_cfm_zeroes_prompt_and_combines_cfg_by_hand(s2, tiny_cfg):
    T, T_ref = 14, 5
    mu = torch.randn(1, T, 16)
    prompt = torch.randn(1, 80, T_ref)
    style = torch.randn(1, tiny_cfg.style_dim)
    noise = torch.randn(1, 80, T)
    est = s2.estimator
    out = cfm_inference(est, mu, prompt, style, n_steps=3, cfg_rate=0.7, noise=noise)
    assert torch.equal(out[..., :T_ref], torch.zeros(1, 80, T_ref))
    # by hand: two separate estimator calls per step, combined
    x = noise.clone()
    x[..., :T_ref] = 0
    px = torch.zeros_like(x)
    px[..., :T_ref] = prompt
    ts = torch.linspace(0, 1, 4)
    t = ts[0]
    lens = torch.tensor([T])
    with torch.no_grad():
        for k in range(1, 4):
            dt = ts[k] - ts[k - 1]
            vc = est(x, px, lens, t.reshape(1), style, mu)
            vu = est(x, torch.zeros_like(px), lens, t.reshape(1), torch.zeros_like(style), torch.zeros_like(mu))
            x = x + dt * (1.7 * vc - 0.7 * vu)
            t = t + dt
            x[..., :T_ref] = 0
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)
    again = cfm_inference(est, mu, prompt, style, n_steps=3, cfg_rate=0.7, generator=torch.Generator().manual_seed(1))
    same = cfm_inference(est, mu, prompt, style, n_steps=3, cfg_rate=0.7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, same)


def test_infer_shapes_and_target_length(s2, tiny_cfg):
    n, t_ref = 50, 17
    mel = s2.infer(torch.randn(1, n, 15), torch.randn(1, n, 24), torch.randn(1, t_ref, 16), torch.randn(1, 80, t_ref),
                   torch.randn(1, tiny_cfg.style_dim), n_steps=2, cfg_rate=0.7, generator=torch.Generator().manual_seed(0))
    assert mel.shape == (1, 80, 86)  # floor(50 * 1.72)


def test_s2mel_file_round_trip_and_errors(tiny_cfg, tmp_path):
    p = tmp_path / "s2mel.pth"
    write_random_s2mel(tiny_cfg, p, 5)
    ck = torch.load(p, weights_only=True)
    cfm = ck["net"]["cfm"]
    assert "estimator.final_layer.linear.weight_g" in cfm and cfm["estimator.input_pos"].dtype == torch.int64
    assert tuple(cfm["estimator.wavenet.in_layers.0.conv.conv.weight_g"].shape) == (40, 1, 1)
    m = load_s2mel(p, tiny_cfg)
    torch.manual_seed(5)
    ref = build_s2mel(tiny_cfg)
    torch.testing.assert_close(m.estimator.final_layer.linear.weight, ref.estimator.final_layer.linear.weight)
    ck["net"]["cfm"] = {"module." + k: v for k, v in cfm.items()}  # DDP prefix is stripped
    torch_save(ck, tmp_path / "ddp.pth")
    load_s2mel(tmp_path / "ddp.pth", tiny_cfg)
    del ck["net"]["gpt_layer"]
    torch_save(ck, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="no 'gpt_layer'"):
        load_s2mel(tmp_path / "bad.pth", tiny_cfg)
    torch_save({"model": {}}, tmp_path / "bad2.pth")
    with pytest.raises(CheckpointError, match="key 'net'"):
        load_s2mel(tmp_path / "bad2.pth", tiny_cfg)


def test_full_size_keys(full_cfg):
    with torch.device("meta"):
        m = S2Mel(full_cfg)
    sd = {n: tuple(v.shape) for n, v in m.models["cfm"].state_dict().items()}
    assert sd["estimator.transformer.layers.12.attention.wqkv.weight"] == (1536, 512)
    assert sd["estimator.transformer.layers.0.feed_forward.w2.weight"] == (512, 1536)
    assert sd["estimator.transformer.layers.0.skip_in_linear.weight"] == (512, 1024)
    assert sd["estimator.cond_x_merge_linear.weight"] == (512, 864) and sd["estimator.skip_linear.weight"] == (512, 592)
    assert sd["estimator.wavenet.res_skip_layers.7.conv.conv.weight"] == (512, 512, 1)
    assert sd["estimator.t_embedder.freqs"] == (128,) and sd["estimator.input_pos"] == (16384,)
    counts = {k: sum(p.numel() for p in v.parameters()) / 1e6 for k, v in m.models.items()}
    assert abs(counts["cfm"] - 98.2) < 0.1 and abs(counts["length_regulator"] - 4.99) < 0.01
    assert abs(counts["gpt_layer"] - 0.49) < 0.01
