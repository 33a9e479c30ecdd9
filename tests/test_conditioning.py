"""Conformer (rel-pos attention without rel_shift) and perceiver against independent re-computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from indextts_trt.reference.conformer import ConformerEncoder, sinusoid_table
from indextts_trt.reference.perceiver import PerceiverResampler


@pytest.fixture(scope="module")
def enc():
    torch.manual_seed(0)
    return ConformerEncoder(input_size=24, output_size=12, attention_heads=3, linear_units=21, num_blocks=2).eval()


def test_sinusoid_table_formula():
    pe = sinusoid_table(7, 6)[0]
    for pos in range(7):
        for i in range(3):
            ang = pos / 10000 ** (2 * i / 6)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(ang), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(ang), abs=1e-6)


@pytest.mark.parametrize("t", [5, 6, 17, 30])
def test_output_length(enc, t):
    y, m = enc(torch.randn(1, t, 24))
    assert y.shape == (1, (t - 1) // 2, 12) and m.shape == (1, 1, (t - 1) // 2)


def test_rel_pos_attention_without_rel_shift_loop_reference(enc):
    """Explicit per-head loops: score[i, j] = ((q_i + u)·k_j + (q_i + v)·p_j) / sqrt(dk), p_j = W_pos·pe[j]."""
    att = enc.encoders[0].self_attn
    torch.manual_seed(1)
    x = torch.randn(1, 6, 12)
    pos = sinusoid_table(6, 12)
    bias = torch.zeros(1, 1, 1, 6)
    with torch.no_grad():
        out = att(x, bias, pos)
        q, k, v = att.linear_q(x)[0], att.linear_k(x)[0], att.linear_v(x)[0]
        p = att.linear_pos(pos)[0]
        heads = []
        for h in range(3):
            sl = slice(4 * h, 4 * h + 4)
            s = torch.empty(6, 6)
            for i in range(6):
                for j in range(6):
                    s[i, j] = ((q[i, sl] + att.pos_bias_u[h]) @ k[j, sl] + (q[i, sl] + att.pos_bias_v[h]) @ p[j, sl]) / 2.0
            heads.append(torch.softmax(s, -1) @ v[:, sl])
        expect = att.linear_out(torch.cat(heads, -1))[None]
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-5)


def test_attention_mask_hides_padded_keys(enc):
    """Masked keys get exactly zero weight (additive -1e4 underflows like upstream's -inf). The
    whole encoder is NOT padding-invariant, as upstream: the conv module zeroes padded frames
    before pointwise_conv1, whose bias then leaks into the depthwise conv. Upstream runs B=1
    all-valid, so only the attention's masking matters."""
    att = enc.encoders[1].self_attn
    torch.manual_seed(2)
    x = torch.randn(1, 11, 12)
    pos = sinusoid_table(11, 12)
    bias = torch.zeros(1, 1, 1, 11)
    bias[..., 7:] = -1e4
    with torch.no_grad():
        masked = att(x, bias, pos)
        p_short = sinusoid_table(11, 12)[:, :7]
        # same queries, keys restricted to the first 7 frames, computed independently
        q, k, v = att.linear_q(x)[0], att.linear_k(x)[0, :7], att.linear_v(x)[0, :7]
        p = att.linear_pos(p_short)[0]
        outs = []
        for h in range(3):
            sl = slice(4 * h, 4 * h + 4)
            sc = ((q[:, sl] + att.pos_bias_u[h]) @ k[:, sl].T + (q[:, sl] + att.pos_bias_v[h]) @ p[:, sl].T) / 2.0
            outs.append(torch.softmax(sc, -1) @ v[:, sl])
        expect = att.linear_out(torch.cat(outs, -1))
    torch.testing.assert_close(masked[0], expect, atol=1e-5, rtol=1e-5)


def test_perceiver_against_einsum_reference():
    torch.manual_seed(3)
    per = PerceiverResampler(dim=15, dim_context=12, num_latents=5, dim_head=5, heads=3, ff_mult=2).eval()
    x = torch.randn(2, 9, 12)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        out = per(x, mask)
        ctx = per.proj_context(x)
        lat = per.latents[None].expand(2, -1, -1)
        for attn, ff in per.layers:
            kv_in = torch.cat([lat, ctx], 1)
            q = attn.to_q(lat).view(2, 5, 3, 5)
            k, v = attn.to_kv(kv_in).chunk(2, -1)
            k, v = k.view(2, 14, 3, 5), v.view(2, 14, 3, 5)
            sim = torch.einsum("bihd,bjhd->bhij", q, k) * 5 ** -0.5
            keep = torch.cat([torch.ones(2, 5, dtype=torch.bool), mask], 1)
            sim = sim.masked_fill(~keep[:, None, None], -torch.finfo(sim.dtype).max)  # upstream's fill
            o = torch.einsum("bhij,bjhd->bihd", sim.softmax(-1), v).reshape(2, 5, 15)
            lat = attn.to_out(o) + lat
            lat = ff(lat) + lat
        expect = F.normalize(lat, dim=-1) * 15 ** 0.5 * per.norm.gamma
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-5)
    assert tuple(per.layers[0][1][0].weight.shape) == (2 * int(15 * 2 * 2 / 3), 15)  # GEGLU inner
