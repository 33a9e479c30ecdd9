"""IndexTTS-2, the first model variant: config, checkpoint layout, stage specs, pipeline."""

from __future__ import annotations

from pathlib import Path

from ..variant import ModelVariant
from .config import IndexTTSConfig, full_config_dict, parse_config, tiny_config_dict
from .layout import CheckpointLayout
from .stages import stage_specs


class IndexTTS2(ModelVariant):
    name = "indextts-2"
    description = "IndexTTS-2 (bilibili), 50 Hz semantic codes, conformer/perceiver conditioning"
    config_versions = ("2.0",)
    # copied next to the graphs by the build: the config and BPE model the front end reads, and the
    # tensors (speed rows, emotion matrices) the host-side steps use, from torch pickles upstream
    host_files = ("config.yaml", "bpe.model", "host_data.safetensors")
    pipeline = "indextts_trt.runtime.indextts2.pipeline:IndexTTS2Pipeline"
    codes_per_second = 50.0  # the semantic codec's frames: w2v-bert's 50 Hz

    def parse_config(self, data: dict, src: str) -> tuple[IndexTTSConfig, list[str]]:
        return parse_config(data, src)

    def sized_dicts(self):
        """(the released config dict, the tiny test config dict), as functions."""
        return full_config_dict, tiny_config_dict

    def config_dict(self, size: str) -> dict:
        from ..config import ConfigError

        if size not in ("tiny", "full"):
            raise ConfigError(f"unknown size {size!r}: expected 'tiny' or 'full'")
        full, tiny = self.sized_dicts()
        return full() if size == "full" else tiny()

    def layout(self, root: str | Path) -> CheckpointLayout:
        return CheckpointLayout(Path(root))

    def stage_specs(self, cfg: IndexTTSConfig):
        return stage_specs(cfg)


VARIANT = IndexTTS2()

__all__ = ["IndexTTS2", "VARIANT"]
