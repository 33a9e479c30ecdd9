"""IndexTTS-2.5 PyTorch reference: GPT in campplus mode, EnhancedCodec, S2Mel, checkpoint I/O.

Expected values marked "upstream" were produced by loading the files our writers write (same
seeds as here) into upstream index-tts ee40fa7's own modules — ``model_v2.UnifiedVoice(...,
spk_cond_mode="campplus")`` (strict: no missing or unexpected key) with HF transformers 4.52.1
``generate``, and ``codec.models.EnhancedCodec.load_checkpoint`` — in a scratch venv (torch
2.13.0 CPU), on the inputs built below. Ours matched them to 2.4e-7 (logits) and 9e-8 (codec).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from indextts_trt.reference.checkpoint_io import CheckpointError, torch_load, torch_save
from indextts_trt.reference.generation import generate_from_prefix
from indextts_trt.reference.v25.codec import load_codec, write_random_codec
from indextts_trt.reference.v25.init_checkpoints import init_checkpoints_v25
from indextts_trt.reference.v25.s2mel import load_s2mel_v25, write_random_s2mel_v25
from indextts_trt.reference.v25.unified_voice import load_unified_voice_v25, write_random_unified_voice_v25
from indextts_trt.runtime.indextts25.config import parse_config_v25, target_mel_length_v25, tiny_config_dict_v25, tiny_config_v25
from indextts_trt.runtime.sampling import SamplingOptions

UP_GREEDY = [60, 53, 64, 87, 30, 51, 45, 20, 22, 61, 58, 94, 23, 34, 38, 36, 31, 56, 72, 46, 42, 80, 29, 26]
UP_BEAM3 = [60, 53, 64, 92, 55, 51, 45, 20, 93, 16, 78, 96, 23, 34, 38, 49, 71, 69, 46, 31, 62, 79, 40, 26]
UP_LOGITS0 = [-0.371143, -0.049788, -0.19834, -1.112225, 0.46643, 0.200692]  # prefill, last position
UP_LOGITS1 = [0.777186, 0.156243, 0.185623, 0.24935, -0.284034, 0.290448]  # code 7 at mel position 2
UP_EMOVEC = [0.145446, 0.06649, 0.212079, 0.762531]
UP_DECODE = [[0.049935, -0.056281, 0.06492], [0.042196, -0.128873, 0.03762], [0.109416, -0.143531, -0.05588]]
UP_DECODE_SUM = 12.6268
UP_QCODES = [[10, 79, 0, 84, 81, 10, 0, 7], [10, 28, 79, 64, 0, 11, 53, 0]]
# upstream MyModel(cfg.s2mel) + load_checkpoint2 + EnhancedCodec.decode + infer_v2_5's length rule +
# cfm.inference (3 steps, CFG 0.7, noise after torch.manual_seed(123)) on our tiny files
UP_MEL_SUM = -34.2492
UP_MEL = [[1.40469, 1.15366, 0.40842], [-0.02225, 0.1152, 1.6962], [0.18678, -1.23064, 1.06893]]


def compat_config():
    """Tiny sizes except what upstream hard-codes (so its modules can load our file): w2v width
    1024 (conformer input, emovec_layer), emo perceiver width 1024 × dim_head 64, CAMPPlus 192."""
    d = copy.deepcopy(tiny_config_dict_v25())
    g = d["gpt"]
    g.update({"model_dim": 24, "heads": 3, "max_mel_tokens": 50, "max_text_tokens": 40, "emo_dim": 1024})
    g["emo_condition_module"] = {"output_size": 8, "linear_units": 13, "attention_heads": 2, "num_blocks": 1,
                                 "input_layer": "conv2d2", "perceiver_mult": 2, "perceiver_dim_head": 64}
    d["semantic_codec"]["hidden_size"] = 1024
    d["s2mel"]["length_regulator"]["in_channels"] = 1024
    d["s2mel"]["style_encoder"]["dim"] = 192
    d["campplus"]["embedding_size"] = 192
    return parse_config_v25(d, "<compat>")[0]


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    cfg = compat_config()
    path = tmp_path_factory.mktemp("g") / "gpt.pth"
    write_random_unified_voice_v25(cfg, path, seed=11)
    return load_unified_voice_v25(path, cfg)


def gpt_inputs():
    gen = torch.Generator().manual_seed(5)
    style = torch.randn(1, 192, generator=gen)
    spk = torch.randn(1, 23, 1024, generator=gen)
    emo = torch.randn(1, 19, 1024, generator=gen)
    text = torch.tensor([5, 0, 77, 301, 1, 12, 0, 250])  # ids 0/1 inside: stripped, as upstream
    return style, spk, emo, text, 3  # lang 3 = es


@torch.no_grad()
def test_gpt_matches_upstream(gpt):
    style, spk, emo, text, lang = gpt_inputs()
    ev = gpt.merge_emovec(spk, emo, alpha=0.6)
    np.testing.assert_allclose(ev[0, :4].numpy(), UP_EMOVEC, atol=2e-6)
    conds = gpt.conds_latent(style, ev)
    prefix = gpt.prompt(conds, text, lang)
    assert prefix.shape[1] == 3 + 5 + 2  # upstream's 14 rows minus its 4 masked left-pad rows
    x = torch.cat([prefix, gpt.mel_embed(torch.tensor([gpt.start_mel_token]), torch.tensor([0])).unsqueeze(0)], 1)
    h, cache = gpt.run_gpt(x)
    np.testing.assert_allclose(gpt.logits(h[:, -1])[0, :6].numpy(), UP_LOGITS0, atol=2e-6)
    h2, _ = gpt.run_gpt(gpt.mel_embed(torch.tensor([7]), torch.tensor([2])).unsqueeze(1), cache)
    np.testing.assert_allclose(gpt.logits(h2[:, -1])[0, :6].numpy(), UP_LOGITS1, atol=2e-6)
    greedy = generate_from_prefix(gpt, prefix, SamplingOptions.greedy(max_new_tokens=24))
    beam = generate_from_prefix(gpt, prefix, SamplingOptions(do_sample=False, num_beams=3, max_new_tokens=24))
    assert greedy.codes.tolist() == UP_GREEDY and beam.codes.tolist() == UP_BEAM3


@torch.no_grad()
def test_conditioning_and_language_rows(gpt):
    style, spk, emo, text, _ = gpt_inputs()
    ev = gpt.merge_emovec(spk, emo)
    conds = gpt.conds_latent(style, ev)
    assert conds.shape == (1, 3, 24)
    torch.testing.assert_close(conds[:, 0], gpt.spk_emb_proj(style) + ev)
    assert torch.count_nonzero(conds[:, 1:]) == 0  # two zero rows where 2.0 has speed_emb
    a, b = gpt.prompt(conds, text, 0), gpt.prompt(conds, text, 13)
    diff = (b - a)[0]
    assert torch.count_nonzero(diff[:3]) == 0  # the language row is added to text only ...
    expect = gpt.lang_embedding.weight[13] - gpt.lang_embedding.weight[0]
    torch.testing.assert_close(diff[3:], expect.expand(diff.shape[0] - 3, -1), atol=1e-6, rtol=0)  # ... all of it
    wrapped = gpt.text_ids_with_bounds(text)
    assert wrapped.tolist() == [0, 5, 77, 301, 12, 250, 1]


def test_gpt_file_is_strict(tmp_path):
    cfg = tiny_config_v25()
    path = tmp_path / "gpt.pth"
    write_random_unified_voice_v25(cfg, path, seed=0)
    sd = torch_load(path)
    keys = set(sd)
    assert {"spk_emb_proj.weight", "lang_embedding.weight", "text_head.weight"} <= keys
    assert sd["lang_embedding.weight"].shape == (107, 15) and sd["text_embedding.weight"].shape == (2004, 15)
    assert not any(k.startswith(("conditioning_encoder.", "perceiver_encoder.", "speed_emb.")) for k in keys)
    sd = dict(sd)
    sd.pop("lang_embedding.weight")
    sd["speed_emb.weight"] = torch.zeros(2, 15)
    sd["spk_emb_proj.weight"] = torch.zeros(15, 22)
    torch_save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_unified_voice_v25(tmp_path / "bad.pth", cfg)
    msg = str(e.value)
    assert "missing keys (1): lang_embedding.weight" in msg and "unknown keys (1): speed_emb.weight" in msg
    assert "spk_emb_proj.weight: file (15, 22) vs model (15, 23)" in msg


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    path = tmp_path_factory.mktemp("c") / "codec.pth"
    write_random_codec(tiny_config_v25(), path, seed=12)
    return path, load_codec(path, tiny_config_v25())


@torch.no_grad()
def test_codec_matches_upstream(codec):
    gen = torch.Generator().manual_seed(5)
    for shape in ((1, 192), (1, 23, 1024), (1, 19, 1024)):  # the GPT inputs, drawn first in the recording run
        torch.randn(*shape, generator=gen)
    codes = torch.randint(0, 97, (2, 9), generator=gen)
    feat50 = torch.randn(2, 15, 24, generator=gen)
    _, model = codec
    dec = model.decode(codes)
    assert dec.shape == (2, 18, 24)  # N codes → 2N frames at 50 Hz
    np.testing.assert_allclose(dec[0, :3, :3].numpy(), UP_DECODE, atol=2e-6)
    assert float(dec.double().sum()) == pytest.approx(UP_DECODE_SUM, abs=1e-3)
    q, emb = model.quantize(feat50)
    assert q.tolist() == UP_QCODES and emb.shape == (2, 8, 24)  # odd T = 15 → ceil(15 / 2)


def test_codec_file_format_and_strictness(codec, tmp_path):
    path, _ = codec
    obj = torch_load(path)
    assert list(obj) == ["model"]
    sd = dict(obj["model"])
    assert {"quantizer.quantizers.0.in_project.weight_g", "quantizer.quantizers.0.out_project.weight_v",
            "down.weight", "up.weight", "encoder.0.embed.weight", "decoder.1.weight"} <= set(sd)
    sd.pop("up.bias")
    torch_save({"model": sd, "optimizer": {"step": 1}}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): up\.bias"):
        load_codec(tmp_path / "c.pth", tiny_config_v25())
    torch_save({"state": sd}, tmp_path / "d.pth")
    with pytest.raises(CheckpointError, match="expected a dict with key 'model'"):
        load_codec(tmp_path / "d.pth", tiny_config_v25())


@torch.no_grad()
def test_s2mel_v25_frame_grid(tmp_path):
    cfg = tiny_config_v25()
    path = tmp_path / "s2mel.pth"
    write_random_s2mel_v25(cfg, path, seed=2)
    net = torch_load(path)["net"]
    assert sorted(net) == ["cfm", "gpt_layer", "length_regulator"]  # the release carries gpt_layer too
    s2 = load_s2mel_v25(path, cfg)
    assert "gpt_layer" not in s2.models
    gen = torch.Generator().manual_seed(1)
    spk = torch.randn(1, 31, cfg.semantic_dim, generator=gen)
    ref_mel = torch.randn(1, cfg.n_mels, 53, generator=gen)
    style = torch.randn(1, cfg.style_dim, generator=gen)
    prompt = s2.prompt_condition(spk, ref_mel.shape[-1])
    assert prompt.shape == (1, 53, cfg.s2mel.length_regulator.channels)
    feat = torch.randn(1, 2 * 7, cfg.semantic_dim, generator=gen)  # codec.decode of 7 codes
    for df in (1.0, 1.3, 0.7):
        mel = s2.infer(feat, prompt, ref_mel, style, duration_factor=df, n_steps=2, generator=gen)
        assert mel.shape == (1, cfg.n_mels, target_mel_length_v25(7, df)) == (1, cfg.n_mels, int(14 * 1.72 * df))
    del net["length_regulator"]
    torch_save({"net": net}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="no 'length_regulator' sub-dict"):
        load_s2mel_v25(tmp_path / "bad.pth", cfg)
    net2 = torch_load(path)["net"]
    del net2["gpt_layer"]
    torch_save({"net": net2}, tmp_path / "nolat.pth")
    load_s2mel_v25(tmp_path / "nolat.pth", cfg)  # a file without gpt_layer is fine


@torch.no_grad()
def test_s2mel_v25_matches_upstream(tmp_path):
    cfg = tiny_config_v25()
    write_random_s2mel_v25(cfg, tmp_path / "s2mel.pth", seed=2)
    write_random_codec(cfg, tmp_path / "codec.pth", seed=12)
    s2, codec = load_s2mel_v25(tmp_path / "s2mel.pth", cfg), load_codec(tmp_path / "codec.pth", cfg)
    g = torch.Generator().manual_seed(9)
    spk, ref_mel = torch.randn(1, 31, 24, generator=g), torch.randn(1, 80, 53, generator=g)
    style, codes = torch.randn(1, 23, generator=g), torch.randint(0, 97, (1, 7), generator=g)
    prompt = s2.prompt_condition(spk, 53)
    torch.manual_seed(123)  # upstream draws its noise with torch.randn after this seed
    noise = torch.randn([1, 80, 53 + target_mel_length_v25(7, 1.3)])
    mel = s2.infer(codec.decode(codes), prompt, ref_mel, style, 1.3, n_steps=3, cfg_rate=0.7, noise=noise)
    assert mel.shape == (1, 80, 31)  # int(14 · 1.72 · 1.3)
    np.testing.assert_allclose(mel[0, :3, :3].numpy(), UP_MEL, atol=2e-5)
    assert float(mel.double().sum()) == pytest.approx(UP_MEL_SUM, abs=1e-3)


def test_init_checkpoints_v25_tiny_round_trips(tmp_path):
    from indextts_trt.reference.bigvgan import load_bigvgan
    from indextts_trt.reference.campplus import load_campplus
    from indextts_trt.reference.unified_voice import load_emo_matrices
    from indextts_trt.reference.w2vbert import load_w2vbert
    from indextts_trt.runtime.indextts25.layout import CheckpointLayoutV25
    from indextts_trt.runtime.text.multilingual import MultilingualTokenizer

    out = tmp_path / "ck"
    report = init_checkpoints_v25("tiny", out, seed=3, progress=False)
    assert report.total_bytes > 0 and set(report.seconds) >= {"codec.pth", "multilingual tiktoken"}
    lay = CheckpointLayoutV25(out)
    cfg = lay.check()
    assert cfg == tiny_config_v25()
    assert not (out / "bpe.model").exists()
    assert MultilingualTokenizer(lay.tokenizer(), cfg.gpt.number_text_tokens).n_vocab == 2003
    load_unified_voice_v25(lay.gpt(cfg), cfg)
    load_codec(lay.codec(), cfg)
    load_s2mel_v25(lay.s2mel(cfg), cfg)
    load_emo_matrices(lay.spk_matrix(cfg), lay.emo_matrix(cfg), cfg)
    load_w2vbert(lay.w2v_bert_dir(), lay.w2v_stat(cfg), cfg)
    load_campplus(lay.campplus(), cfg)
    load_bigvgan(lay.bigvgan_dir(), cfg)
    with pytest.raises(FileExistsError):
        init_checkpoints_v25("tiny", out, progress=False)
