"""IndexTTS-2.5, the second model variant: config, checkpoint layout, stage specs, request options,
pipeline (docs/indextts-2.5.md)."""

from __future__ import annotations

from pathlib import Path

from ..indextts2 import IndexTTS2
from .config import IndexTTS25Config, full_config_dict_v25, parse_config_v25, tiny_config_dict_v25
from .layout import TOKENIZER_FILE, CheckpointLayoutV25
from .options import RunOptions25
from .stages import stage_specs


class IndexTTS25(IndexTTS2):
    name = "indextts-2.5"
    description = ("IndexTTS-2.5 (bilibili), 25 Hz codec codes, CAMPPlus speaker conditioning, multilingual "
                   "(zh/en/ja/es/ar) with language selection")
    config_versions = ("2.5",)
    # the config and tiktoken ranks the front end reads; the emotion preset matrices (torch
    # pickles upstream) as float32 tensors
    host_files = ("config.yaml", TOKENIZER_FILE, "host_data.safetensors")
    pipeline = "indextts_trt.runtime.indextts25.pipeline:IndexTTS25Pipeline"
    options_class = RunOptions25
    codes_per_second = 25.0  # EnhancedCodec: 50 Hz features downsampled 2x (config.codes_per_second)

    def parse_config(self, data: dict, src: str) -> tuple[IndexTTS25Config, list[str]]:
        return parse_config_v25(data, src)

    def sized_dicts(self):
        return full_config_dict_v25, tiny_config_dict_v25

    def layout(self, root: str | Path) -> CheckpointLayoutV25:
        return CheckpointLayoutV25(Path(root))

    def stage_specs(self, cfg: IndexTTS25Config):
        return stage_specs(cfg)


VARIANT = IndexTTS25()

__all__ = ["IndexTTS25", "VARIANT"]
