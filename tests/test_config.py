"""config.yaml: every released field typed and validated; errors name the field and file."""

from __future__ import annotations

import copy

import pytest
import yaml

from indextts_trt.runtime.indextts2.config import (
    ConfigError,
    dump_config,
    full_config_dict,
    load_config,
    parse_config,
    target_mel_length,
    tiny_config_dict,
)

# The released file as text (ARCHITECTURE.md §1.1), in its original flow-style YAML, so we test
# parsing of the real syntax (e.g. fmax: "None", version: 2.0 as a float) rather than our dump.
RELEASED_YAML = """
dataset:
  bpe_model: bpe.model
  sample_rate: 24000
  squeeze: false
  mel: {sample_rate: 24000, n_fft: 1024, hop_length: 256, win_length: 1024, n_mels: 100, mel_fmin: 0, normalize: false}
gpt:
  model_dim: 1280
  max_mel_tokens: 1815
  max_text_tokens: 600
  heads: 20
  use_mel_codes_as_input: true
  mel_length_compression: 1024
  layers: 24
  number_text_tokens: 12000
  number_mel_codes: 8194
  start_mel_token: 8192
  stop_mel_token: 8193
  start_text_token: 0
  stop_text_token: 1
  train_solo_embeddings: false
  condition_type: "conformer_perceiver"
  condition_module: {output_size: 512, linear_units: 2048, attention_heads: 8, num_blocks: 6, input_layer: "conv2d2", perceiver_mult: 2}
  emo_condition_module: {output_size: 512, linear_units: 1024, attention_heads: 4, num_blocks: 4, input_layer: "conv2d2", perceiver_mult: 2}
semantic_codec:
  codebook_size: 8192
  hidden_size: 1024
  codebook_dim: 8
  vocos_dim: 384
  vocos_intermediate_dim: 2048
  vocos_num_layers: 12
s2mel:
  preprocess_params:
    sr: 22050
    spect_params: {n_fft: 1024, win_length: 1024, hop_length: 256, n_mels: 80, fmin: 0, fmax: "None"}
  dit_type: "DiT"
  reg_loss_type: "l1"
  style_encoder: {dim: 192}
  length_regulator:
    channels: 512
    is_discrete: false
    in_channels: 1024
    content_codebook_size: 2048
    sampling_ratios: [1, 1, 1, 1]
    vector_quantize: false
    n_codebooks: 1
    quantizer_dropout: 0.0
    f0_condition: false
    n_f0_bins: 512
  DiT:
    hidden_dim: 512
    num_heads: 8
    depth: 13
    class_dropout_prob: 0.1
    block_size: 8192
    in_channels: 80
    style_condition: true
    final_layer_type: 'wavenet'
    target: 'mel'
    content_dim: 512
    content_codebook_size: 1024
    content_type: 'discrete'
    f0_condition: false
    n_f0_bins: 512
    content_codebooks: 1
    is_causal: false
    long_skip_connection: true
    zero_prompt_speech_token: false
    time_as_token: false
    style_as_token: false
    uvit_skip_connection: true
    add_resblock_in_transformer: false
  wavenet: {hidden_dim: 512, num_layers: 8, kernel_size: 5, dilation_rate: 1, p_dropout: 0.2, style_condition: true}
gpt_checkpoint: gpt.pth
w2v_stat: wav2vec2bert_stats.pt
s2mel_checkpoint: s2mel.pth
emo_matrix: feat2.pt
spk_matrix: feat1.pt
emo_num: [3, 17, 2, 8, 4, 5, 10, 24]
qwen_emo_path: qwen0.6bemo4-merge/
vocoder: {type: "bigvgan", name: "nvidia/bigvgan_v2_22khz_80band_256x"}
version: 2.0
"""


def test_released_yaml_parses_to_the_full_config(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text(RELEASED_YAML)
    cfg = load_config(p)
    assert cfg.gpt.model_dim == 1280 and cfg.gpt.condition_module.attention_heads == 8
    assert cfg.s2mel.DiT.depth == 13 and cfg.s2mel.preprocess_params.spect_params.fmax == "None"
    assert cfg.version == "2.0" and cfg.semantic_dim == 1024 and cfg.style_dim == 192
    # the optional fields take upstream's hard-coded values
    assert cfg.gpt.condition_num_latent == 32 and cfg.gpt.emo_dim == 1024 and cfg.w2v_layer == 17
    assert cfg.gpt.condition_module.perceiver_dim_head == 64 and cfg.campplus.block_layers == [12, 24, 16]
    # and the whole thing equals our built-in full config
    assert cfg.to_dict() == parse_config(full_config_dict())[0].to_dict()


def test_full_dump_has_exactly_the_released_keys(tmp_path):
    cfg = parse_config(full_config_dict())[0]
    dump_config(cfg, tmp_path / "config.yaml", include_optional=False)
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    released = yaml.safe_load(RELEASED_YAML)
    released["version"] = "2.0"

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(written) == keys(released)
    assert written == released


def test_tiny_round_trip_keeps_optional_fields(tmp_path):
    cfg = parse_config(tiny_config_dict())[0]
    dump_config(cfg, tmp_path / "c.yaml", include_optional=True)
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and again.gpt.condition_num_latent == 5 and again.w2v_layer == 2


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["gpt"].pop("heads"), "missing field 'gpt.heads'"),
        (lambda d: d["gpt"].__setitem__("layers", "24"), "field 'gpt.layers' must be int"),
        (lambda d: d["s2mel"]["DiT"].__setitem__("is_causal", 0), "field 's2mel.DiT.is_causal' must be bool"),
        (lambda d: d["gpt"]["condition_module"].pop("num_blocks"), "gpt.condition_module.num_blocks"),
        (lambda d: d.__setitem__("emo_num", [1, 2]), "emo_num must be 8"),
        (lambda d: d["gpt"].__setitem__("heads", 7), "divisible by gpt.heads"),
        (lambda d: d["s2mel"]["length_regulator"].__setitem__("sampling_ratios", [1, "x"]), "sampling_ratios"),
        (lambda d: d["gpt"].__setitem__("number_mel_codes", 100), "number_mel_codes"),
        (lambda d: d.__setitem__("gpt", [1]), "'gpt' must be a mapping"),
    ],
)
def test_bad_fields_name_the_field(mutate, message):
    d = copy.deepcopy(full_config_dict())
    mutate(d)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_config(d, "some/config.yaml")
    assert "some/config.yaml" in str(e.value)


def test_unknown_field_warns_not_fails():
    d = copy.deepcopy(full_config_dict())
    d["gpt"]["new_thing"] = 1
    _, warnings = parse_config(d, "c.yaml")
    assert any("gpt.new_thing" in w for w in warnings)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpt: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("n", [0, 1, 7, 50, 100, 1500])
def test_target_mel_length_matches_float32_truncation(n):
    import numpy as np

    # upstream: (code_lens * 1.72).long() on an int64 tensor -> float32 product, truncated
    assert target_mel_length(n) == int(np.floor(np.float32(n) * np.float32(1.72)))
    assert target_mel_length(100) == 172
