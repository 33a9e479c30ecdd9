"""UnifiedVoice v2 (GPT side): key layout, the double LayerNorm, KV-cache decoding, positions, latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from indextts_trt.reference.checkpoint_io import CheckpointError, torch_save
from indextts_trt.reference.generation import (
    decode_position,
    generate_codes,
    latents,
    prompt_embeddings,
)
from indextts_trt.reference.gpt2 import reorder_cache
from indextts_trt.reference.unified_voice import (
    build_unified_voice,
    load_emo_matrices,
    load_unified_voice,
    write_random_emo_matrices,
    write_random_unified_voice,
)
from indextts_trt.runtime.sampling import SamplingOptions


@pytest.fixture(scope="module")
def model(tiny_cfg):
    torch.manual_seed(0)
    m = build_unified_voice(tiny_cfg)
    torch.nn.init.normal_(m.speed_emb.weight, std=0.02)
    for p in m.parameters():  # spread the logits so argmax/beam choices are not near-ties
        if p.dim() == 2 and p.shape[0] == tiny_cfg.gpt.number_mel_codes:
            p.data.mul_(20)
    return m


@pytest.fixture(scope="module")
def conds(model, tiny_cfg):
    torch.manual_seed(1)
    spk = torch.randn(1, 23, tiny_cfg.semantic_dim)
    with torch.no_grad():
        return model.conds_latent(spk, model.merge_emovec(spk, torch.randn(1, 19, tiny_cfg.semantic_dim), 0.6))


TEXT = torch.tensor([7, 11, 300, 42, 9])


def full_pass_logits(model, conds, text, codes):
    """Independent: one causal pass over [prefix, start@0, c1@2, c2@3, ...]; logits per step."""
    prefix = prompt_embeddings(model, conds, text)
    ids = torch.tensor([model.start_mel_token] + list(codes))
    pos = torch.tensor([0] + [decode_position(k) for k in range(1, len(codes) + 1)])
    x = torch.cat([prefix, model.mel_embed(ids, pos).unsqueeze(0)], dim=1)
    with torch.no_grad():
        h, _ = model.run_gpt(x)
        return model.logits(h[0, prefix.shape[1]:])


def test_decode_positions_match_upstream_rule():
    # GPT2InferenceModel.forward: position = attention_mask_len - P, the mask grown once per step
    for k in range(1, 6):
        p = 40
        mask_len = (p + 1) + k  # prompt + start, extended k times before the k-th code is fed
        assert decode_position(k) == mask_len - p


def test_cached_decoding_equals_full_forward(model, conds):
    codes = generate_codes(model, conds, TEXT, SamplingOptions.greedy(max_new_tokens=12)).codes
    assert len(codes) >= 3
    full = full_pass_logits(model, conds, TEXT, codes)
    # incremental: prefill, then one code at a time through the cache
    prefix = prompt_embeddings(model, conds, TEXT)
    with torch.no_grad():
        x = torch.cat([prefix, model.mel_embed(torch.tensor([model.start_mel_token]), torch.tensor([0]))[None]], 1)
        h, cache = model.run_gpt(x)
        step_logits = [model.logits(h[0, -1])]
        for k, c in enumerate(codes, start=1):
            h, cache = model.run_gpt(model.mel_embed(torch.tensor([c]), torch.tensor([k + 1]))[None], cache)
            step_logits.append(model.logits(h[0, -1]))
    torch.testing.assert_close(torch.stack(step_logits), full, atol=1e-5, rtol=1e-5)


def test_beam_reorder_keeps_rows_consistent(model, conds):
    prefix = prompt_embeddings(model, conds, TEXT)
    start = model.mel_embed(torch.tensor([model.start_mel_token]), torch.tensor([0]))[None]
    histories = [[], [], []]
    rng = np.random.default_rng(0)
    with torch.no_grad():
        h, cache = model.run_gpt(torch.cat([prefix, start], 1))
        cache = [(k.expand(3, -1, -1, -1), v.expand(3, -1, -1, -1)) for k, v in cache]
        for k in range(1, 5):
            idx = torch.from_numpy(rng.integers(0, 3, size=3))
            toks = torch.from_numpy(rng.integers(0, 37, size=3))
            cache = reorder_cache(cache, idx)
            histories = [histories[i] + [int(t)] for i, t in zip(idx.tolist(), toks)]
            h, cache = model.run_gpt(model.mel_embed(toks, torch.full((3,), k + 1))[:, None], cache)
            logits = model.logits(h[:, -1])
    for r in range(3):
        torch.testing.assert_close(logits[r], full_pass_logits(model, conds, TEXT, histories[r])[-1],
                                   atol=1e-5, rtol=1e-5)


def test_double_layernorm_and_conv1d_layout(model, conds):
    h = torch.randn(2, 4, model.model_dim)
    ref = model.mel_head(model.final_norm(h))
    assert torch.equal(model.logits(h), ref)
    blk = model.gpt.h[0]
    assert tuple(blk.attn.c_attn.weight.shape) == (15, 45)  # Conv1D: [in, out]
    x = torch.randn(3, 15)
    torch.testing.assert_close(blk.attn.c_attn(x), F.linear(x, blk.attn.c_attn.weight.t(), blk.attn.c_attn.bias))
    # ln_f is inside run_gpt: perturbing it changes the logits (both norms are live)
    with torch.no_grad():
        x = prompt_embeddings(model, conds, TEXT)
        a = model.logits(model.run_gpt(x)[0])
        model.gpt.ln_f.bias.add_(0.5)
        b = model.logits(model.run_gpt(x)[0])
        model.gpt.ln_f.bias.sub_(0.5)
    assert not torch.allclose(a, b)


def test_latents_equal_an_independent_pass(model, conds):
    codes = torch.tensor([3, 17, 5, 29])
    lat = latents(model, conds, TEXT, codes)
    assert lat.shape == (1, 4, model.model_dim)
    text = torch.cat([torch.tensor([0]), TEXT, torch.tensor([1])])
    mel = torch.cat([torch.tensor([model.start_mel_token]), codes, torch.tensor([model.stop_mel_token])])
    emb = torch.cat([conds, (model.text_embedding(text) + model.text_pos_embedding.emb.weight[: len(text)])[None],
                     (model.mel_embedding(mel) + model.mel_pos_embedding.emb.weight[: len(mel)])[None]], 1)
    with torch.no_grad():
        h, _ = model.run_gpt(emb)
        expect = model.final_norm(h)[:, -len(mel):-2]
    torch.testing.assert_close(lat, expect)


def test_conds_layout_and_emovec_merge(model, tiny_cfg):
    spk = torch.randn(1, 21, tiny_cfg.semantic_dim)
    emo = torch.randn(1, 17, tiny_cfg.semantic_dim)
    with torch.no_grad():
        base, e = model.get_emovec(spk), model.get_emovec(emo)
        torch.testing.assert_close(model.merge_emovec(spk, emo, 0.25), base + 0.25 * (e - base))
        c = model.conds_latent(spk, base)
    n = tiny_cfg.gpt.condition_num_latent
    assert c.shape == (1, n + 2, tiny_cfg.gpt.model_dim)
    torch.testing.assert_close(c[0, n], model.speed_emb.weight[1])
    torch.testing.assert_close(c[0, n + 1], model.speed_emb.weight[0])


def test_generation_determinism(model, conds, tiny_cfg):
    g1 = generate_codes(model, conds, TEXT, SamplingOptions.greedy(max_new_tokens=20))
    g2 = generate_codes(model, conds, TEXT, SamplingOptions.greedy(max_new_tokens=20))
    assert g1.codes.tolist() == g2.codes.tolist()
    s1 = generate_codes(model, conds, TEXT, SamplingOptions(seed=5, max_new_tokens=20))
    s2 = generate_codes(model, conds, TEXT, SamplingOptions(seed=5, max_new_tokens=20))
    assert s1.codes.tolist() == s2.codes.tolist()
    assert all(0 <= c < tiny_cfg.semantic_codec.codebook_size for c in s1.codes)


def test_emo_vector_from_weights(model, tiny_cfg):
    style = torch.tensor([[1.0] + [0.0] * (tiny_cfg.style_dim - 1)])
    spk = [torch.eye(tiny_cfg.style_dim)[[3, 0, 5]] for _ in range(8)]  # row 1 matches style
    emo = [torch.arange(3, dtype=torch.float32)[:, None].expand(3, tiny_cfg.gpt.model_dim) * (i + 1) for i in range(8)]
    w = torch.tensor([0.5, 0, 0, 0, 0, 0, 0, 0.25])
    out = model.emo_vector_from_weights(w, style, spk, emo)
    torch.testing.assert_close(out, torch.full((1, tiny_cfg.gpt.model_dim), 0.5 * 1 * 1 + 0.25 * 1 * 8))


def test_write_load_round_trip_and_errors(tmp_path, tiny_cfg, conds):
    p = tmp_path / "gpt.pth"
    write_random_unified_voice(tiny_cfg, p, seed=3)
    m = load_unified_voice(p, tiny_cfg)
    sd = torch.load(p, weights_only=True)
    assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())
    # wrapped {"model": sd} with upstream's legacy keys loads too
    wrapped = {"model": {**sd, "gpt.h.0.attn.bias": torch.ones(1), "inference_model.lm_head.1.weight": torch.ones(1)}}
    torch_save(wrapped, tmp_path / "wrapped.pth")
    load_unified_voice(tmp_path / "wrapped.pth", tiny_cfg)
    bad = dict(sd)
    bad.pop("gpt.h.1.mlp.c_fc.weight")
    bad["mel_head.weight"] = torch.zeros(5, 15)
    bad["surprise.weight"] = torch.zeros(1)
    torch_save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_unified_voice(tmp_path / "bad.pth", tiny_cfg)
    msg = str(e.value)
    assert "bad.pth" in msg and "gpt.h.1.mlp.c_fc.weight" in msg and "surprise.weight" in msg and "mel_head.weight" in msg
    (tmp_path / "trunc.pth").write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pth is truncated or corrupt"):
        load_unified_voice(tmp_path / "trunc.pth", tiny_cfg)


def test_emo_matrices(tmp_path, tiny_cfg):
    write_random_emo_matrices(tiny_cfg, tmp_path, 0)
    spk, emo = load_emo_matrices(tmp_path / "feat1.pt", tmp_path / "feat2.pt", tiny_cfg)
    assert [t.shape[0] for t in spk] == tiny_cfg.emo_num and emo[0].shape[1] == tiny_cfg.gpt.model_dim
    torch_save(torch.zeros(5, tiny_cfg.style_dim), tmp_path / "feat1.pt")
    with pytest.raises(CheckpointError, match="feat1.pt"):
        load_emo_matrices(tmp_path / "feat1.pt", tmp_path / "feat2.pt", tiny_cfg)


# ARCHITECTURE.md §3.8, released sizes
FULL_SHAPES = {
    "text_embedding.weight": (12001, 1280), "mel_embedding.weight": (8194, 1280),
    "mel_pos_embedding.emb.weight": (1818, 1280), "text_pos_embedding.emb.weight": (602, 1280),
    "speed_emb.weight": (2, 1280), "emo_layer.weight": (1280, 1280), "emovec_layer.weight": (1280, 1024),
    "final_norm.weight": (1280,), "text_head.weight": (12001, 1280), "mel_head.weight": (8194, 1280),
    "gpt.h.23.ln_1.weight": (1280,), "gpt.h.0.attn.c_attn.weight": (1280, 3840), "gpt.h.0.attn.c_attn.bias": (3840,),
    "gpt.h.0.attn.c_proj.weight": (1280, 1280), "gpt.h.0.mlp.c_fc.weight": (1280, 5120),
    "gpt.h.0.mlp.c_proj.weight": (5120, 1280), "gpt.ln_f.weight": (1280,),
    "conditioning_encoder.embed.conv.0.weight": (512, 1, 3, 3), "conditioning_encoder.embed.out.0.weight": (512, 261632),
    "conditioning_encoder.embed.pos_enc.pe": (1, 5000, 512),
    "conditioning_encoder.encoders.5.self_attn.linear_q.weight": (512, 512),
    "conditioning_encoder.encoders.0.self_attn.linear_pos.weight": (512, 512),
    "conditioning_encoder.encoders.0.self_attn.pos_bias_u": (8, 64),
    "conditioning_encoder.encoders.0.feed_forward.w_1.weight": (2048, 512),
    "conditioning_encoder.encoders.0.conv_module.pointwise_conv1.weight": (1024, 512, 1),
    "conditioning_encoder.encoders.0.conv_module.depthwise_conv.weight": (512, 1, 15),
    "conditioning_encoder.encoders.0.conv_module.norm.weight": (512,),
    "conditioning_encoder.encoders.0.conv_module.pointwise_conv2.weight": (512, 512, 1),
    "conditioning_encoder.encoders.0.norm_final.weight": (512,), "conditioning_encoder.after_norm.weight": (512,),
    "perceiver_encoder.proj_context.weight": (1280, 512), "perceiver_encoder.latents": (32, 1280),
    "perceiver_encoder.layers.1.0.to_q.weight": (512, 1280), "perceiver_encoder.layers.0.0.to_kv.weight": (1024, 1280),
    "perceiver_encoder.layers.0.0.to_out.weight": (1280, 512), "perceiver_encoder.layers.0.1.0.weight": (3412, 1280),
    "perceiver_encoder.layers.0.1.2.weight": (1280, 1706), "perceiver_encoder.norm.gamma": (1280,),
    "emo_conditioning_encoder.encoders.3.feed_forward.w_1.weight": (1024, 512),
    "emo_conditioning_encoder.encoders.0.self_attn.pos_bias_v": (4, 128),
    "emo_perceiver_encoder.proj_context.weight": (1024, 512), "emo_perceiver_encoder.latents": (1, 1024),
    "emo_perceiver_encoder.layers.0.0.to_q.weight": (256, 1024), "emo_perceiver_encoder.layers.1.0.to_kv.weight": (512, 1024),
    "emo_perceiver_encoder.layers.0.0.to_out.weight": (1024, 256), "emo_perceiver_encoder.layers.0.1.0.weight": (2730, 1024),
    "emo_perceiver_encoder.layers.0.1.2.weight": (1024, 1365), "emo_perceiver_encoder.norm.gamma": (1024,),
}


def test_full_size_keys_and_shapes_on_meta(full_cfg):
    with torch.device("meta"):
        m = build_unified_voice(full_cfg)
    sd = m.state_dict()
    for k, shape in FULL_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any("emo_conditioning_encoder.encoders.4." in k for k in sd)  # 4 emo blocks
    assert not any("conditioning_encoder.encoders.6." in k and k.startswith("cond") for k in sd)
    n = sum(v.numel() for k, v in sd.items() if not k.endswith(".pe"))
    assert abs(n / 1e6 - 866.0) < 1.5, n  # ARCHITECTURE.md §3.8: ≈ 866.0 M parameters
