"""The IndexTTS-2 ``config.yaml`` as typed dataclasses, validated (torch-free).

Every field of the released file (ARCHITECTURE.md §1.1) is a typed dataclass attribute with the
same name and nesting, so ``cfg.s2mel.DiT.hidden_dim`` reads like the YAML. A missing field or a
field of the wrong type is a :class:`ConfigError` naming the dotted path and the file.

A few sizes are hard-coded upstream (the 1024-dim semantic features, the perceivers' head size,
the 32 conditioning latents, CAMPPlus' widths, the w2v-bert layer that is read). They are
*optional* fields here with the released values as defaults, so the released file loads as is and
our tiny test configuration can shrink them. They are never written into a full-size config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, parse_dataclass, read_yaml, to_dict, write_yaml


# --------------------------------------------------------------------------------------------
# Schema. Field order follows the released file; optional (non-released) fields come last and
# carry a default.


@dataclass(frozen=True)
class MelParams:
    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    mel_fmin: float
    normalize: bool


@dataclass(frozen=True)
class DatasetConfig:
    """Legacy IndexTTS-1 mel parameters; not used by the v2 inference path."""

    bpe_model: str
    sample_rate: int
    squeeze: bool
    mel: MelParams


@dataclass(frozen=True)
class ConditionModule:
    output_size: int
    linear_units: int
    attention_heads: int
    num_blocks: int
    input_layer: str
    perceiver_mult: int
    # not in the released file: upstream hard-codes PerceiverResampler(dim_head=64)
    perceiver_dim_head: int = 64


@dataclass(frozen=True)
class GPTConfig:
    model_dim: int
    max_mel_tokens: int
    max_text_tokens: int
    heads: int
    use_mel_codes_as_input: bool
    mel_length_compression: int
    layers: int
    number_text_tokens: int
    number_mel_codes: int
    start_mel_token: int
    stop_mel_token: int
    start_text_token: int
    stop_text_token: int
    train_solo_embeddings: bool
    condition_type: str
    condition_module: ConditionModule
    emo_condition_module: ConditionModule
    # not in the released file: UnifiedVoice constructor defaults / hard-coded sizes
    condition_num_latent: int = 32
    max_conditioning_inputs: int = 1
    emo_dim: int = 1024  # emo perceiver width and emovec_layer input (hard-coded 1024 upstream)


@dataclass(frozen=True)
class SemanticCodecConfig:
    codebook_size: int
    hidden_size: int
    codebook_dim: int
    vocos_dim: int
    vocos_intermediate_dim: int
    vocos_num_layers: int


@dataclass(frozen=True)
class SpectParams:
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: str | float | None  # the released file has the *string* "None"


@dataclass(frozen=True)
class PreprocessParams:
    sr: int
    spect_params: SpectParams


@dataclass(frozen=True)
class StyleEncoderConfig:
    dim: int


@dataclass(frozen=True)
class LengthRegulatorConfig:
    channels: int
    is_discrete: bool
    in_channels: int
    content_codebook_size: int
    sampling_ratios: list[int]
    vector_quantize: bool
    n_codebooks: int
    quantizer_dropout: float
    f0_condition: bool
    n_f0_bins: int


@dataclass(frozen=True)
class DiTConfig:
    hidden_dim: int
    num_heads: int
    depth: int
    class_dropout_prob: float
    block_size: int
    in_channels: int
    style_condition: bool
    final_layer_type: str
    target: str
    content_dim: int
    content_codebook_size: int
    content_type: str
    f0_condition: bool
    n_f0_bins: int
    content_codebooks: int
    is_causal: bool
    long_skip_connection: bool
    zero_prompt_speech_token: bool
    time_as_token: bool
    style_as_token: bool
    uvit_skip_connection: bool
    add_resblock_in_transformer: bool


@dataclass(frozen=True)
class WavenetConfig:
    hidden_dim: int
    num_layers: int
    kernel_size: int
    dilation_rate: int
    p_dropout: float
    style_condition: bool


@dataclass(frozen=True)
class S2MelConfig:
    preprocess_params: PreprocessParams
    dit_type: str
    reg_loss_type: str
    style_encoder: StyleEncoderConfig
    length_regulator: LengthRegulatorConfig
    DiT: DiTConfig
    wavenet: WavenetConfig


@dataclass(frozen=True)
class VocoderConfig:
    type: str
    name: str


@dataclass(frozen=True)
class CampplusConfig:
    """Not in the released file: CAM++ widths are hard-coded upstream (3D-Speaker defaults)."""

    feat_dim: int = 80
    embedding_size: int = 192
    growth_rate: int = 32
    bn_size: int = 4
    init_channels: int = 128
    m_channels: int = 32  # FCM head width
    block_layers: list[int] = field(default_factory=lambda: [12, 24, 16])


@dataclass(frozen=True)
class IndexTTSConfig:
    dataset: DatasetConfig
    gpt: GPTConfig
    semantic_codec: SemanticCodecConfig
    s2mel: S2MelConfig
    gpt_checkpoint: str
    w2v_stat: str
    s2mel_checkpoint: str
    emo_matrix: str
    spk_matrix: str
    emo_num: list[int]
    qwen_emo_path: str
    vocoder: VocoderConfig
    version: str
    # not in the released file
    campplus: CampplusConfig = field(default_factory=CampplusConfig)
    w2v_layer: int = 17  # hidden_states[17] of w2v-bert-2.0 is the semantic feature

    # ---- derived sizes, named once so no module re-derives them ----
    @property
    def semantic_dim(self) -> int:
        """Width of the w2v-bert features / semantic codec embeddings (1024 released)."""
        return self.semantic_codec.hidden_size

    @property
    def style_dim(self) -> int:
        return self.s2mel.style_encoder.dim

    @property
    def n_mels(self) -> int:
        return self.s2mel.preprocess_params.spect_params.n_mels

    @property
    def sample_rate(self) -> int:
        return self.s2mel.preprocess_params.sr

    @property
    def hop_length(self) -> int:
        return self.s2mel.preprocess_params.spect_params.hop_length

    @property
    def num_emotions(self) -> int:
        return len(self.emo_num)

    def to_dict(self, *, include_optional: bool = True) -> dict[str, Any]:
        return to_dict(self, include_optional)


def validate_shared(cfg, src: str) -> None:
    """The consistency rules of the sections IndexTTS-2.5 shares with 2.0 (gpt, s2mel, campplus)."""
    g = cfg.gpt

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{src}: {msg}")

    need(g.model_dim % g.heads == 0, f"gpt.model_dim ({g.model_dim}) must be divisible by gpt.heads ({g.heads})")
    need(g.condition_type == "conformer_perceiver",
         f"gpt.condition_type must be 'conformer_perceiver' for IndexTTS-2, got {g.condition_type!r}")
    for name in ("condition_module", "emo_condition_module"):
        m = getattr(g, name)
        need(m.output_size % m.attention_heads == 0,
             f"gpt.{name}.output_size ({m.output_size}) must be divisible by attention_heads ({m.attention_heads})")
        need(m.input_layer == "conv2d2", f"gpt.{name}.input_layer must be 'conv2d2', got {m.input_layer!r}")
    need(g.number_mel_codes == cfg.semantic_codec.codebook_size + 2,
         f"gpt.number_mel_codes ({g.number_mel_codes}) must be semantic_codec.codebook_size + 2 "
         f"({cfg.semantic_codec.codebook_size + 2})")
    need(g.start_mel_token == g.number_mel_codes - 2 and g.stop_mel_token == g.number_mel_codes - 1,
         "gpt.start_mel_token/stop_mel_token must be the last two mel codes")
    need((g.start_text_token, g.stop_text_token) == (0, 1), "gpt.start_text_token/stop_text_token must be 0/1")
    lr = cfg.s2mel.length_regulator
    need(lr.in_channels == cfg.semantic_dim,
         f"s2mel.length_regulator.in_channels ({lr.in_channels}) must equal semantic_codec.hidden_size ({cfg.semantic_dim})")
    need(lr.is_discrete is False, "s2mel.length_regulator.is_discrete must be false (continuous GPT latents)")
    dit = cfg.s2mel.DiT
    need(dit.hidden_dim % dit.num_heads == 0 and (dit.hidden_dim // dit.num_heads) % 2 == 0,
         f"s2mel.DiT.hidden_dim ({dit.hidden_dim}) / num_heads ({dit.num_heads}) must be an even head size (RoPE pairs)")
    need(dit.depth % 2 == 1, f"s2mel.DiT.depth ({dit.depth}) must be odd (U-ViT skips pair layers around the middle)")
    need(dit.content_dim == lr.channels,
         f"s2mel.DiT.content_dim ({dit.content_dim}) must equal s2mel.length_regulator.channels ({lr.channels})")
    need(dit.in_channels == cfg.n_mels,
         f"s2mel.DiT.in_channels ({dit.in_channels}) must equal spect_params.n_mels ({cfg.n_mels})")
    need(cfg.s2mel.wavenet.hidden_dim == dit.hidden_dim,
         f"s2mel.wavenet.hidden_dim ({cfg.s2mel.wavenet.hidden_dim}) must equal s2mel.DiT.hidden_dim ({dit.hidden_dim})")
    need(cfg.campplus.embedding_size == cfg.style_dim,
         f"campplus.embedding_size ({cfg.campplus.embedding_size}) must equal s2mel.style_encoder.dim ({cfg.style_dim})")
    need(all(n > 0 for n in cfg.emo_num) and len(cfg.emo_num) == 8, f"emo_num must be 8 positive counts, got {cfg.emo_num}")
    fmax = cfg.s2mel.preprocess_params.spect_params.fmax
    need(fmax in (None, "None") or isinstance(fmax, (int, float)), f"s2mel.preprocess_params.spect_params.fmax invalid: {fmax!r}")
    need(cfg.w2v_layer >= 1, f"w2v_layer must be >= 1, got {cfg.w2v_layer}")


def parse_config(data: Any, src: str = "<config>") -> tuple[IndexTTSConfig, list[str]]:
    """Parse a loaded YAML mapping. Returns the config and warnings about ignored fields."""
    warnings: list[str] = []
    cfg = parse_dataclass(IndexTTSConfig, data, src, "", warnings)
    validate_shared(cfg, src)
    return cfg, warnings


def load_parsed(parse, path: str | Path):
    """``config.yaml`` (or its directory) through ``parse`` (a variant's parser); its warnings
    about ignored fields are logged. Raises :class:`ConfigError` naming the file and field."""
    import logging

    path = Path(path)
    cfg, warnings = parse(read_yaml(path), str(path / "config.yaml" if path.is_dir() else path))
    for w in warnings:
        logging.getLogger(__name__).warning(w)
    return cfg


def load_config(path: str | Path) -> IndexTTSConfig:
    """Load and validate an IndexTTS-2 ``config.yaml``."""
    return load_parsed(parse_config, path)


def dump_config(cfg: IndexTTSConfig, path: str | Path, *, include_optional: bool) -> None:
    """Write ``cfg`` as YAML. Full-size configs are written without the optional fields so the
    file has exactly the released keys."""
    write_yaml(cfg.to_dict(include_optional=include_optional), path)


# --------------------------------------------------------------------------------------------
# The two configurations the project writes checkpoints for.


def full_config_dict() -> dict[str, Any]:
    """The released IndexTTS-2 ``config.yaml`` (ARCHITECTURE.md §1.1), value for value."""
    return {
        "dataset": {
            "bpe_model": "bpe.model", "sample_rate": 24000, "squeeze": False,
            "mel": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "win_length": 1024,
                    "n_mels": 100, "mel_fmin": 0, "normalize": False},
        },
        "gpt": {
            "model_dim": 1280, "max_mel_tokens": 1815, "max_text_tokens": 600, "heads": 20,
            "use_mel_codes_as_input": True, "mel_length_compression": 1024, "layers": 24,
            "number_text_tokens": 12000, "number_mel_codes": 8194, "start_mel_token": 8192,
            "stop_mel_token": 8193, "start_text_token": 0, "stop_text_token": 1,
            "train_solo_embeddings": False, "condition_type": "conformer_perceiver",
            "condition_module": {"output_size": 512, "linear_units": 2048, "attention_heads": 8,
                                 "num_blocks": 6, "input_layer": "conv2d2", "perceiver_mult": 2},
            "emo_condition_module": {"output_size": 512, "linear_units": 1024, "attention_heads": 4,
                                     "num_blocks": 4, "input_layer": "conv2d2", "perceiver_mult": 2},
        },
        "semantic_codec": {"codebook_size": 8192, "hidden_size": 1024, "codebook_dim": 8, "vocos_dim": 384,
                           "vocos_intermediate_dim": 2048, "vocos_num_layers": 12},
        "s2mel": {
            "preprocess_params": {"sr": 22050, "spect_params": {"n_fft": 1024, "win_length": 1024, "hop_length": 256,
                                                                "n_mels": 80, "fmin": 0, "fmax": "None"}},
            "dit_type": "DiT", "reg_loss_type": "l1", "style_encoder": {"dim": 192},
            "length_regulator": {"channels": 512, "is_discrete": False, "in_channels": 1024,
                                 "content_codebook_size": 2048, "sampling_ratios": [1, 1, 1, 1],
                                 "vector_quantize": False, "n_codebooks": 1, "quantizer_dropout": 0.0,
                                 "f0_condition": False, "n_f0_bins": 512},
            "DiT": {"hidden_dim": 512, "num_heads": 8, "depth": 13, "class_dropout_prob": 0.1, "block_size": 8192,
                    "in_channels": 80, "style_condition": True, "final_layer_type": "wavenet", "target": "mel",
                    "content_dim": 512, "content_codebook_size": 1024, "content_type": "discrete",
                    "f0_condition": False, "n_f0_bins": 512, "content_codebooks": 1, "is_causal": False,
                    "long_skip_connection": True, "zero_prompt_speech_token": False, "time_as_token": False,
                    "style_as_token": False, "uvit_skip_connection": True, "add_resblock_in_transformer": False},
            "wavenet": {"hidden_dim": 512, "num_layers": 8, "kernel_size": 5, "dilation_rate": 1, "p_dropout": 0.2,
                        "style_condition": True},
        },
        "gpt_checkpoint": "gpt.pth", "w2v_stat": "wav2vec2bert_stats.pt", "s2mel_checkpoint": "s2mel.pth",
        "emo_matrix": "feat2.pt", "spk_matrix": "feat1.pt", "emo_num": [3, 17, 2, 8, 4, 5, 10, 24],
        "qwen_emo_path": "qwen0.6bemo4-merge/",
        "vocoder": {"type": "bigvgan", "name": "nvidia/bigvgan_v2_22khz_80band_256x"},
        "version": "2.0",
    }


def tiny_config_dict() -> dict[str, Any]:
    """A deliberately odd, small configuration for tests: sizes chosen so that a transposed or
    mis-split axis cannot hide (heads 3 x head size 5, prime-ish widths, 2-3 layers)."""
    d = full_config_dict()
    g = d["gpt"]
    g.update({
        "model_dim": 15, "heads": 3, "layers": 2, "max_mel_tokens": 250, "max_text_tokens": 120,
        "number_text_tokens": 512, "number_mel_codes": 99, "start_mel_token": 97, "stop_mel_token": 98,
        "condition_num_latent": 5, "emo_dim": 14,
    })
    g["condition_module"] = {"output_size": 12, "linear_units": 21, "attention_heads": 3, "num_blocks": 2,
                             "input_layer": "conv2d2", "perceiver_mult": 2, "perceiver_dim_head": 5}
    g["emo_condition_module"] = {"output_size": 8, "linear_units": 13, "attention_heads": 2, "num_blocks": 1,
                                 "input_layer": "conv2d2", "perceiver_mult": 2, "perceiver_dim_head": 7}
    d["semantic_codec"] = {"codebook_size": 97, "hidden_size": 24, "codebook_dim": 3, "vocos_dim": 10,
                           "vocos_intermediate_dim": 17, "vocos_num_layers": 2}
    s = d["s2mel"]
    s["style_encoder"] = {"dim": 23}
    s["length_regulator"].update({"channels": 16, "in_channels": 24})
    s["DiT"].update({"hidden_dim": 20, "num_heads": 2, "depth": 5, "content_dim": 16})
    s["wavenet"].update({"hidden_dim": 20, "num_layers": 3})
    d["campplus"] = {"feat_dim": 80, "embedding_size": 23, "growth_rate": 8, "bn_size": 2, "init_channels": 16,
                     "m_channels": 8, "block_layers": [2, 3, 2]}
    d["w2v_layer"] = 2
    return d


def sized_config(size: str, parse, full_dict, tiny_dict):
    """The parsed config of random-weight checkpoints of ``size``: 'full' (released) or 'tiny'."""
    if size not in ("tiny", "full"):
        raise ConfigError(f"unknown size {size!r}: expected 'tiny' or 'full'")
    return parse(full_dict() if size == "full" else tiny_dict(), f"<{size}>")[0]


def config_for_size(size: str) -> IndexTTSConfig:
    return sized_config(size, parse_config, full_config_dict, tiny_config_dict)


def full_config() -> IndexTTSConfig:
    return config_for_size("full")


def tiny_config() -> IndexTTSConfig:
    return config_for_size("tiny")


def max_new_codes(cfg: IndexTTSConfig, requested: int) -> int:
    """Codes a segment may generate: the request, capped so every mel position (decode: k + 1;
    latent pass: up to N + 1) stays inside the position table. Upstream never hits the cap
    (1500 ≤ max_mel_tokens 1815); small configs do."""
    return max(1, min(requested, cfg.gpt.max_mel_tokens))


def target_mel_length(num_codes: int) -> int:
    """``floor(N * 1.72)`` exactly as upstream's int64 cast of a float32 product (1.72 mel frames
    per code is upstream's literal; 22050 / 256 / 50 would be 1.7227)."""
    return int(np.float32(num_codes) * np.float32(1.72)) if num_codes >= 0 else 0


__all__ = [
    "ConfigError", "IndexTTSConfig", "load_config", "parse_config", "dump_config",
    "full_config", "tiny_config", "config_for_size", "full_config_dict", "tiny_config_dict",
    "target_mel_length", "max_new_codes",
]
