"""Typed, validated IndexTTS-2.5 ``config.yaml`` (torch-free).

The released file (upstream commit ``aa01d63``, ``configs/config_v2_5.yaml``; docs/indextts-2.5.md
§1) keeps 2.0's ``gpt``/``semantic_codec``/``s2mel`` sections key for key, drops ``dataset``, and
writes ``vocoder`` as ``{name: bigvgan_generator.pt}``. The shared sections reuse 2.0's dataclasses
(runtime/indextts2/config.py) so the PyTorch modules both models share read the same attribute names.

What 2.5 changes, and where the values come from (none of it is in the file):
- the GPT is conditioned on the CAMPPlus vector through ``spk_emb_proj`` (Linear(192 → D), 192 =
  CAMPPlus' embedding size); ``gpt.condition_module`` is parsed but builds nothing;
- the codec is ``EnhancedCodec`` with its constructor default ``downsample_scale=2``: 50 Hz
  w2v-bert frames → 25 codes/s, and ``decode`` upsamples back to 50 Hz;
- the mel length is ``int(2N · 1.72 · duration_factor)`` in Python floats (2.0: float32 ``N·1.72``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, parse_dataclass, to_dict, write_yaml
from ..indextts2.config import (
    CampplusConfig,
    GPTConfig,
    IndexTTSConfig,
    S2MelConfig,
    full_config_dict as full_config_dict_v2,
    load_parsed,
    max_new_codes,
    sized_config,
    tiny_config_dict as tiny_config_dict_v2,
    validate_shared,
)

# Whisper-style special tokens registered after the mergeable ranks (runtime/text/multilingual.py)
NUM_SPECIAL_TOKENS = 1673
CODEC_UPSAMPLE = 2  # EnhancedCodec.decode: F.interpolate(scale_factor=2) — hard-coded upstream
FRAMES_PER_50HZ_FRAME = 1.72  # upstream's constant (exact would be 22050/256/50 = 1.7227)
# the GPT's conditioning prefix: [spk_emb_proj(style) + emovec, 0, 0] (model_v2, campplus mode)
CONDITIONING_ROWS = 3


@dataclass(frozen=True)
class SemanticCodec25Config:
    codebook_size: int
    hidden_size: int
    codebook_dim: int
    vocos_dim: int
    vocos_intermediate_dim: int
    vocos_num_layers: int
    # not in the released file: EnhancedCodec reads them from the section if present
    num_quantizers: int = 1
    downsample_scale: int = 2


@dataclass(frozen=True)
class Vocoder25Config:
    """Released as ``{name: "bigvgan_generator.pt"}``; upstream never reads it (it loads
    ``hf_cache/bigvgan/`` whatever this says)."""

    name: str


@dataclass(frozen=True)
class IndexTTS25Config:
    gpt: GPTConfig
    semantic_codec: SemanticCodec25Config
    s2mel: S2MelConfig
    gpt_checkpoint: str
    w2v_stat: str
    s2mel_checkpoint: str
    emo_matrix: str
    spk_matrix: str
    emo_num: list[int]
    qwen_emo_path: str
    vocoder: Vocoder25Config
    version: str
    # not in the released file (hard-coded upstream; shrinkable for the tiny test model)
    campplus: CampplusConfig = field(default_factory=CampplusConfig)
    w2v_layer: int = 17

    # ---- derived sizes: IndexTTSConfig's own accessors, so shared modules read either config ----
    semantic_dim = IndexTTSConfig.semantic_dim
    style_dim = IndexTTSConfig.style_dim
    n_mels = IndexTTSConfig.n_mels
    sample_rate = IndexTTSConfig.sample_rate
    hop_length = IndexTTSConfig.hop_length
    num_emotions = IndexTTSConfig.num_emotions

    @property
    def mergeable_ranks(self) -> int:
        """Byte-level BPE ranks in the tiktoken file: number_text_tokens minus the specials."""
        return self.gpt.number_text_tokens - NUM_SPECIAL_TOKENS

    def to_dict(self, *, include_optional: bool = True) -> dict[str, Any]:
        return to_dict(self, include_optional)


def _validate(cfg: IndexTTS25Config, src: str) -> None:
    # every 2.0 consistency rule holds for the shared sections (same keys, same modules)
    g, sc = cfg.gpt, cfg.semantic_codec

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{src}: {msg}")

    need(str(cfg.version) == "2.5", f"version {cfg.version!r} is not an IndexTTS-2.5 config (expected 2.5)")
    validate_shared(cfg, src)

    need(g.number_text_tokens >= NUM_SPECIAL_TOKENS + 256,
         f"gpt.number_text_tokens ({g.number_text_tokens}) must be at least {NUM_SPECIAL_TOKENS + 256}: the "
         f"tokenizer has {NUM_SPECIAL_TOKENS} special tokens after 256 single-byte ranks")
    need(sc.num_quantizers == 1, f"semantic_codec.num_quantizers must be 1, got {sc.num_quantizers}")
    # decode() upsamples by a hard-coded 2 and only when downsample_scale > 1 (else it fails upstream)
    need(sc.downsample_scale == 2, f"semantic_codec.downsample_scale must be 2 (EnhancedCodec.decode "
                                   f"always upsamples 2x), got {sc.downsample_scale}")


def parse_config_v25(data: Any, src: str = "<config>") -> tuple[IndexTTS25Config, list[str]]:
    """Parse a loaded YAML mapping. Returns the config and warnings about ignored fields."""
    warnings: list[str] = []
    cfg = parse_dataclass(IndexTTS25Config, data, src, "", warnings)
    _validate(cfg, src)
    return cfg, warnings


def load_config_v25(path: str | Path) -> IndexTTS25Config:
    """Load and validate a 2.5 ``config.yaml``; a :class:`ConfigError` names the file and field."""
    return load_parsed(parse_config_v25, path)


def dump_config_v25(cfg: IndexTTS25Config, path: str | Path, *, include_optional: bool) -> None:
    """Write ``cfg`` as YAML (atomically); full-size configs without the optional fields, so the
    file has exactly the released keys."""
    write_yaml(cfg.to_dict(include_optional=include_optional), path)


# --------------------------------------------------------------------------------------------
# The two configurations the project writes checkpoints for.


def _as_v25(d: dict[str, Any], number_text_tokens: int) -> dict[str, Any]:
    """A 2.0 config dict with the three released 2.5 changes (docs/indextts-2.5.md §1)."""
    del d["dataset"]
    d["gpt"]["number_text_tokens"] = number_text_tokens
    d["vocoder"] = {"name": "bigvgan_generator.pt"}
    d["version"] = "2.5"
    return d


def full_config_dict_v25() -> dict[str, Any]:
    """The released IndexTTS-2.5 ``config.yaml`` (aa01d63:configs/config_v2_5.yaml), value for value:
    2.0's gpt/semantic_codec/s2mel sections with ``number_text_tokens`` 60509, no ``dataset``."""
    return _as_v25(full_config_dict_v2(), 60509)


def tiny_config_dict_v25() -> dict[str, Any]:
    """Odd small sizes (heads 3 × head size 5, prime-ish widths). ``number_text_tokens`` 2003 =
    1673 specials + 330 ranks (256 bytes + 74 merges): the smallest odd vocabulary that still
    holds the whole special-token table."""
    return _as_v25(tiny_config_dict_v2(), 2003)


def config_v25_for_size(size: str) -> IndexTTS25Config:
    return sized_config(size, parse_config_v25, full_config_dict_v25, tiny_config_dict_v25)


def full_config_v25() -> IndexTTS25Config:
    return config_v25_for_size("full")


def tiny_config_v25() -> IndexTTS25Config:
    return config_v25_for_size("tiny")


def target_mel_length_v25(num_codes: int, duration_factor: float = 1.0) -> int:
    """Mel frames for ``num_codes`` 25 Hz codes, as infer_v2_5 computes it:
    ``int(S_infer.shape[1] * 1.72 * duration_factor)`` with ``S_infer.shape[1] = 2N`` (the codec's
    50 Hz output), evaluated left to right in Python (float64) arithmetic and truncated."""
    if num_codes < 0:
        raise ConfigError(f"num_codes must be >= 0, got {num_codes}")
    if not duration_factor > 0:
        raise ConfigError(f"duration_factor must be > 0, got {duration_factor}")
    return int(CODEC_UPSAMPLE * num_codes * FRAMES_PER_50HZ_FRAME * duration_factor)


def max_segment_frames(cfg: IndexTTS25Config) -> int:
    """The most mel frames one segment may have: ``max_mel_tokens`` codes at duration factor 1
    (6 243 frames, 72.5 s, for the release). The DiT, length regulator and BigVGAN ranges are sized
    for it; sizing them for upstream's slider maximum (2.0) instead would make the DiT's range
    maximum 13 778 frames, whose attention alone (2 CFG rows × 8 heads × T² float32, per request)
    is 12 GB at full size."""
    return target_mel_length_v25(cfg.gpt.max_mel_tokens, 1.0)


def max_codes_v25(cfg: IndexTTS25Config, requested: int, duration_factor: float) -> int:
    """Codes a segment may generate: IndexTTS-2's cap (the request, at most ``max_mel_tokens``),
    then at most as many as :func:`max_segment_frames` holds at ``duration_factor``. Applied before
    generation, so a slow factor never fails after the GPT's work. It binds only where upstream
    would make a segment longer than 72.5 s (full size): upstream's default 1 500 codes fit up to
    factor 1.21."""
    n = max_new_codes(cfg, requested)
    frames = max_segment_frames(cfg)
    # the grid is monotone in N: step down from the float estimate to the exact largest fit
    n = min(n, int(frames / (CODEC_UPSAMPLE * FRAMES_PER_50HZ_FRAME * duration_factor)) + 1)
    while n > 1 and target_mel_length_v25(n, duration_factor) > frames:
        n -= 1
    return n


def codes_per_second(cfg: IndexTTS25Config) -> float:
    """25 for the release: w2v-bert's 50 Hz frames (16 kHz / hop 160 / stack 2) over the codec's 2x."""
    return 16000 / 160 / 2 / cfg.semantic_codec.downsample_scale


__all__ = [
    "IndexTTS25Config", "SemanticCodec25Config", "Vocoder25Config", "parse_config_v25", "load_config_v25",
    "dump_config_v25", "full_config_dict_v25", "tiny_config_dict_v25", "full_config_v25", "tiny_config_v25",
    "config_v25_for_size", "target_mel_length_v25", "max_segment_frames", "max_codes_v25", "codes_per_second", "NUM_SPECIAL_TOKENS", "CODEC_UPSAMPLE",
    "CONDITIONING_ROWS",
]
