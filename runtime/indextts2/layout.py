"""The released IndexTTS-2 checkpoint directory layout (ARCHITECTURE.md §1.2), torch-free.

One place names every file, so the writer, the loaders, the exporter's cache key and the error
messages agree on paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from ..files import checkpoint_source
from .config import IndexTTSConfig, load_config


@dataclass(frozen=True)
class CheckpointLayout:
    root: Path

    # files named by config.yaml
    def config(self) -> Path:
        return self.root / "config.yaml"

    def bpe_model(self) -> Path:
        return self.root / "bpe.model"

    def gpt(self, cfg: IndexTTSConfig) -> Path:
        return self.root / cfg.gpt_checkpoint

    def s2mel(self, cfg: IndexTTSConfig) -> Path:
        return self.root / cfg.s2mel_checkpoint

    def w2v_stat(self, cfg: IndexTTSConfig) -> Path:
        return self.root / cfg.w2v_stat

    def spk_matrix(self, cfg: IndexTTSConfig) -> Path:
        return self.root / cfg.spk_matrix

    def emo_matrix(self, cfg: IndexTTSConfig) -> Path:
        return self.root / cfg.emo_matrix

    # auxiliary models, downloaded upstream into hf_cache/
    @property
    def hf_cache(self) -> Path:
        return self.root / "hf_cache"

    def w2v_bert_dir(self) -> Path:
        return self.hf_cache / "w2v-bert-2.0"

    def semantic_codec(self) -> Path:
        return self.hf_cache / "semantic_codec_model.safetensors"

    def campplus(self) -> Path:
        return self.hf_cache / "campplus_cn_common.bin"

    def bigvgan_dir(self) -> Path:
        return self.hf_cache / "bigvgan"

    def required_files(self, cfg: IndexTTSConfig) -> dict[str, Path]:
        """Every file inference needs, by a short name used in errors and the manifest."""
        return {
            "config": self.config(),
            "bpe_model": self.bpe_model(),
            "gpt": self.gpt(cfg),
            "s2mel": self.s2mel(cfg),
            "w2v_stat": self.w2v_stat(cfg),
            "spk_matrix": self.spk_matrix(cfg),
            "emo_matrix": self.emo_matrix(cfg),
            "w2v_bert_config": self.w2v_bert_dir() / "config.json",
            "w2v_bert_weights": self.w2v_bert_dir() / "model.safetensors",
            "semantic_codec": self.semantic_codec(),
            "campplus": self.campplus(),
            "bigvgan_config": self.bigvgan_dir() / "config.json",
            "bigvgan_weights": self.bigvgan_dir() / "bigvgan_generator.pt",
        }

    family = ""  # named in the incomplete-directory error (a variant's layout subclass sets it)

    def read_config(self):
        return load_config(self.config())

    def check(self) -> IndexTTSConfig:
        """Load the config and verify that every required file exists; name the missing ones."""
        if not self.root.is_dir():
            raise ConfigError(f"checkpoint directory not found: {self.root}")
        cfg = self.read_config()
        # a released pickle may be replaced by its safetensors twin (tts-export convert)
        missing = [f"{k} ({p})" for k, p in self.required_files(cfg).items() if not checkpoint_source(p).is_file()]
        if missing:
            raise ConfigError(f"{self.family + ' ' if self.family else ''}checkpoint directory {self.root} is "
                              "incomplete; missing: " + ", ".join(missing))
        return cfg
