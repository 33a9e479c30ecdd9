"""IndexTTS-2.5 config.yaml, checkpoint layout, the 25 Hz mel-length rule and code post-processing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from indextts_trt.runtime.indextts25.codes import cut_at_stop, remove_long_silence
from indextts_trt.runtime.config import ConfigError
from indextts_trt.runtime.indextts25.config import (
    codes_per_second,
    dump_config_v25,
    full_config_dict_v25,
    load_config_v25,
    parse_config_v25,
    target_mel_length_v25,
    tiny_config_dict_v25,
)
from indextts_trt.runtime.indextts25.layout import CODEC_FILE, TOKENIZER_FILE, CheckpointLayoutV25

# Top-level and gpt keys of upstream's aa01d63:configs/config_v2_5.yaml, in file order.
RELEASED_TOP = ["gpt", "semantic_codec", "s2mel", "gpt_checkpoint", "w2v_stat", "s2mel_checkpoint", "emo_matrix",
                "spk_matrix", "emo_num", "qwen_emo_path", "vocoder", "version"]


def test_full_config_is_the_released_file():
    d = full_config_dict_v25()
    assert list(d) == RELEASED_TOP
    assert "dataset" not in d and d["vocoder"] == {"name": "bigvgan_generator.pt"}
    g = d["gpt"]
    assert (g["number_text_tokens"], g["number_mel_codes"], g["model_dim"], g["layers"]) == (60509, 8194, 1280, 24)
    cfg, warnings = parse_config_v25(d)
    assert warnings == [] and cfg.version == "2.5"
    assert cfg.mergeable_ranks == 58836  # 60509 - 1673 special tokens (vLLM-Omni states both numbers)
    assert codes_per_second(cfg) == 25.0


def test_released_yaml_syntax_parses(tmp_path):
    # version: 2.5 is a float in the file; fmax is the string "None"
    text = yaml.safe_dump(full_config_dict_v25(), sort_keys=False).replace("version: '2.5'", "version: 2.5")
    assert "version: 2.5" in text
    (tmp_path / "config.yaml").write_text(text)
    cfg = load_config_v25(tmp_path)
    assert cfg.version == "2.5" and cfg.s2mel.preprocess_params.spect_params.fmax == "None"


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_dump_round_trips(tmp_path, size):
    d = tiny_config_dict_v25() if size == "tiny" else full_config_dict_v25()
    cfg = parse_config_v25(d)[0]
    dump_config_v25(cfg, tmp_path / "config.yaml", include_optional=size == "tiny")
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    if size == "full":
        assert written == {**full_config_dict_v25()}  # exactly the released keys, no optional ones
    assert load_config_v25(tmp_path / "config.yaml") == cfg


def test_errors_name_the_field(tmp_path):
    d = tiny_config_dict_v25()
    del d["gpt"]["emo_condition_module"]["num_blocks"]
    with pytest.raises(ConfigError, match=r"gpt\.emo_condition_module\.num_blocks"):
        parse_config_v25(d, "x.yaml")
    d = tiny_config_dict_v25()
    d["gpt"]["number_text_tokens"] = 1900
    with pytest.raises(ConfigError, match="number_text_tokens.*1929"):
        parse_config_v25(d)
    d = tiny_config_dict_v25()
    d["semantic_codec"]["downsample_scale"] = 1
    with pytest.raises(ConfigError, match="downsample_scale must be 2"):
        parse_config_v25(d)
    d = tiny_config_dict_v25()
    d["campplus"]["embedding_size"] = 22
    with pytest.raises(ConfigError, match=r"campplus\.embedding_size \(22\) must equal s2mel\.style_encoder\.dim"):
        parse_config_v25(d)
    d = copy.deepcopy(tiny_config_dict_v25())
    d["version"] = "2.0"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="not an IndexTTS-2.5 config"):
        load_config_v25(tmp_path)


def test_unknown_fields_warn():
    d = tiny_config_dict_v25()
    d["dataset"] = {"bpe_model": "bpe.model"}
    assert parse_config_v25(d)[1] == ["<config>: unknown field 'dataset' ignored"]


def test_mel_length_rule_is_python_float_arithmetic():
    # infer_v2_5: int(S_infer.shape[1] * 1.72 * duration_factor) with S_infer.shape[1] = 2N
    assert [target_mel_length_v25(n) for n in (0, 1, 25, 100, 853)] == [0, 3, 86, 344, 2934]
    # float64, left to right: 750 * 1.72 * 0.7 = 902.999..., exact arithmetic would give 903
    assert target_mel_length_v25(375, 0.7) == 902
    # ... and float32 (2.0's tensor arithmetic) would give 1676 here, not 1677
    assert target_mel_length_v25(375, 1.3) == 1677
    assert int(np.float32(750) * np.float32(1.72) * np.float32(1.3)) == 1676
    with pytest.raises(ConfigError, match="duration_factor"):
        target_mel_length_v25(3, 0.0)


def test_layout_names_every_required_file(tmp_path):
    cfg = parse_config_v25(tiny_config_dict_v25())[0]
    lay = CheckpointLayoutV25(tmp_path)
    req = lay.required_files(cfg)
    assert req["tokenizer"].name == TOKENIZER_FILE == "multilingual_zh_ja_yue_char_del.tiktoken"
    assert req["codec"].name == CODEC_FILE == "codec.pth"
    assert {"gpt", "s2mel", "w2v_stat", "spk_matrix", "emo_matrix", "campplus", "bigvgan_weights"} <= set(req)
    assert "bpe_model" not in req and "bpe_model" in lay.optional_files(cfg)
    dump_config_v25(cfg, lay.config(), include_optional=True)
    with pytest.raises(ConfigError, match=r"missing: tokenizer \(.*tiktoken\), gpt"):
        lay.check()


def test_cut_at_stop():
    codes = np.array([[5, 6, 9, 9], [5, 9, 9, 9]])
    out, lens = cut_at_stop(codes, stop_token=9)
    assert lens.tolist() == [2, 1] and out.tolist() == [[5, 6], [5, 9]]


def test_remove_long_silence_quirks():
    s, stop = 52, 99
    # 31 silent codes in the row (more than 30): every run of silence is cut to 10
    row = [1] + [s] * 25 + [2] + [s] * 6 + [stop, stop]
    out, lens = remove_long_silence(np.array([row]), stop)
    assert out.tolist() == [[1] + [s] * 10 + [2] + [s] * 6] and lens.tolist() == [18]
    # the count is over the whole buffer, padding after the stop included
    row = [1] + [s] * 25 + [stop] + [s] * 6
    out, lens = remove_long_silence(np.array([row]), stop)
    assert out.tolist() == [[1] + [s] * 10] and lens.tolist() == [11]
    # 30 or fewer: nothing shrinks; rows are not cut individually, only clipped to the longest
    codes = np.array([[1, s, s, stop, 7], [1, 2, 3, 4, stop]])
    out, lens = remove_long_silence(codes, stop)
    assert lens.tolist() == [3, 4] and out.tolist() == [[1, s, s, stop], [1, 2, 3, 4]]
    # one row shrunk: all rows re-padded with the stop code to the longest
    codes = np.array([[1] + [s] * 31 + [stop], [1] * 12 + [stop] * 21])
    out, lens = remove_long_silence(codes, stop)
    assert lens.tolist() == [11, 12] and out.shape == (2, 12) and out[0, 11] == stop
