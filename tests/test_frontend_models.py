"""w2v-bert wrapper, semantic codec and CAMPPlus: layouts, numerics, loading errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from indextts_trt.reference.campplus import CAMPPlus, CAMLayer, load_campplus, write_random_campplus
from indextts_trt.reference.checkpoint_io import CheckpointError, safetensors_load, safetensors_save, torch_save
from indextts_trt.reference.semantic_codec import (
    RepCodec,
    build_semantic_codec,
    load_semantic_codec,
    write_random_semantic_codec,
)
from indextts_trt.reference.w2vbert import FULL_CONFIG, load_w2vbert, write_random_w2v_stats, write_random_w2vbert


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory, tiny_cfg):
    d = tmp_path_factory.mktemp("w2v")
    write_random_w2vbert(tiny_cfg, d / "w2v-bert-2.0", 0, "tiny")
    write_random_w2v_stats(tiny_cfg, d / "stats.pt", 1)
    return d


def test_w2vbert_reads_layer_and_normalizes(w2v_dir, tiny_cfg):
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    m = load_w2vbert(w2v_dir / "w2v-bert-2.0", w2v_dir / "stats.pt", tiny_cfg)
    # independent: the full HF model (all layers) loaded from the same files
    conf = json.loads((w2v_dir / "w2v-bert-2.0" / "config.json").read_text())
    assert conf["num_hidden_layers"] > tiny_cfg.w2v_layer  # the file holds more layers than are read
    full = Wav2Vec2BertModel(Wav2Vec2BertConfig.from_dict(conf)).eval()
    full.load_state_dict(safetensors_load(w2v_dir / "w2v-bert-2.0" / "model.safetensors"))
    stats = torch.load(w2v_dir / "stats.pt", weights_only=True)
    x = torch.randn(1, 33, 160)
    with torch.no_grad():
        hs = full(input_features=x, output_hidden_states=True).hidden_states[tiny_cfg.w2v_layer]
        expect = (hs - stats["mean"]) / torch.sqrt(stats["var"])
        torch.testing.assert_close(m(x), expect, atol=1e-5, rtol=1e-5)


def test_w2vbert_errors(w2v_dir, tiny_cfg, tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**FULL_CONFIG, "hidden_size": 7}))
    with pytest.raises(CheckpointError, match="hidden_size 7"):
        load_w2vbert(d, w2v_dir / "stats.pt", tiny_cfg)
    torch_save({"mean": torch.zeros(3)}, tmp_path / "bad_stats.pt")
    with pytest.raises(CheckpointError, match="bad_stats.pt"):
        load_w2vbert(w2v_dir / "w2v-bert-2.0", tmp_path / "bad_stats.pt", tiny_cfg)


def test_w2vbert_full_config_param_count():
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    with torch.device("meta"):
        m = Wav2Vec2BertModel(Wav2Vec2BertConfig.from_dict(FULL_CONFIG))
    n = sum(p.numel() for p in m.parameters())
    assert 575e6 < n < 585e6, n  # ≈ 580 M (ARCHITECTURE.md §6.1)
    assert tuple(m.state_dict()["encoder.layers.0.self_attn.distance_embedding.weight"].shape) == (73, 64)


def test_codec_cosine_lookup_and_vq2emb(tiny_cfg):
    torch.manual_seed(0)
    c = build_semantic_codec(tiny_cfg)
    x = torch.randn(2, 13, tiny_cfg.semantic_dim)
    with torch.no_grad():
        codes, q = c.quantize(x)
        torch.testing.assert_close(c.vq2emb(codes), q)
        z = c.encoder(x.transpose(1, 2)).transpose(1, 2)
        vq = c.quantizer.quantizers[0]
        e = vq.in_project(z).transpose(1, 2)
        cos = F.normalize(e, dim=-1) @ F.normalize(vq.codebook.weight, dim=-1).T
    assert torch.equal(codes, cos.argmax(-1))  # brute-force cosine nearest neighbour


def test_codec_files_and_errors(tiny_cfg, tmp_path):
    p = tmp_path / "codec.safetensors"
    write_random_semantic_codec(tiny_cfg, p, 3)
    sd = safetensors_load(p)
    assert "quantizer.quantizers.0.in_project.weight_g" in sd and "decoder.0.convnext.1.gamma" in sd
    m = load_semantic_codec(p, tiny_cfg)
    x = torch.randn(1, 9, tiny_cfg.semantic_dim)
    with torch.no_grad():
        assert m.quantize(x)[0].shape == (1, 9)
    sd.pop("decoder.1.weight")
    safetensors_save(sd, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="decoder.1.weight"):
        load_semantic_codec(tmp_path / "bad.safetensors", tiny_cfg)


def test_codec_full_size(full_cfg):
    with torch.device("meta"):
        m = RepCodec(full_cfg)
    n = sum(p.numel() for p in m.parameters()) / 1e6
    assert abs(n - 44.29) < 0.1, n
    assert tuple(m.quantizer.quantizers[0].codebook.weight.shape) == (8192, 8)


def test_campplus_segment_pooling_and_output(tiny_cfg, tmp_path):
    x = torch.randn(2, 5, 237)
    seg = CAMLayer.seg_pooling(x)
    for t in (0, 99, 100, 236):  # frame t gets the mean of its 100-frame segment (the last one short)
        s = (t // 100) * 100
        torch.testing.assert_close(seg[..., t], x[..., s:min(s + 100, 237)].mean(-1))
    write_random_campplus(tiny_cfg, tmp_path / "c.bin", 0)
    m = load_campplus(tmp_path / "c.bin", tiny_cfg)
    with torch.no_grad():
        out = m(torch.randn(1, 151, 80))
    assert out.shape == (1, tiny_cfg.style_dim) and torch.isfinite(out).all()
    sd = torch.load(tmp_path / "c.bin", weights_only=True)
    sd["xvector.dense.linear.weight"] = torch.zeros(3, 3, 1)
    torch_save(sd, tmp_path / "bad.bin")
    with pytest.raises(CheckpointError, match="xvector.dense.linear.weight"):
        load_campplus(tmp_path / "bad.bin", tiny_cfg)


def test_campplus_full_size(full_cfg):
    with torch.device("meta"):
        m = CAMPPlus(full_cfg)
    sd = m.state_dict()
    assert abs(sum(p.numel() for p in m.parameters()) / 1e6 - 6.85) < 0.05
    assert tuple(sd["xvector.block3.tdnnd16.cam_layer.linear_local.weight"].shape) == (32, 128, 3)
    assert tuple(sd["xvector.dense.linear.weight"].shape) == (192, 1024, 1)
    assert "xvector.dense.nonlinear.batchnorm.running_var" in sd and "head.layer2.1.bn2.weight" in sd


def test_w2vbert_padding_mask_matches_transformers(w2v_dir, tiny_cfg):
    """Our -1e4 bias path equals HF's own masking (finfo.min) when the last frame is padding."""
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    m = load_w2vbert(w2v_dir / "w2v-bert-2.0", w2v_dir / "stats.pt", tiny_cfg)
    conf = json.loads((w2v_dir / "w2v-bert-2.0" / "config.json").read_text())
    full = Wav2Vec2BertModel(Wav2Vec2BertConfig.from_dict(conf)).eval()
    full.load_state_dict(safetensors_load(w2v_dir / "w2v-bert-2.0" / "model.safetensors"))
    stats = torch.load(w2v_dir / "stats.pt", weights_only=True)
    x = torch.randn(1, 21, 160)
    mask = torch.ones(1, 21, dtype=torch.long)
    mask[0, -1] = 0
    with torch.no_grad():
        hs = full(input_features=x, attention_mask=mask, output_hidden_states=True).hidden_states[tiny_cfg.w2v_layer]
        expect = (hs - stats["mean"]) / torch.sqrt(stats["var"])
        got = m(x, mask)
    torch.testing.assert_close(got[:, :-1], expect[:, :-1], atol=1e-5, rtol=1e-5)
