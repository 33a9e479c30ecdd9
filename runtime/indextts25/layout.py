"""The released IndexTTS-2.5 checkpoint directory (docs/indextts-2.5.md §2), torch-free.

Against 2.0: ``bpe.model`` is replaced (for inference) by the tiktoken rank file, the MaskGCT
``semantic_codec_model.safetensors`` by ``codec.pth``; the auxiliary models in ``hf_cache/`` are
the same three. Names that upstream hard-codes rather than reading from config.yaml are
constants here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from .config import IndexTTS25Config, load_config_v25

TOKENIZER_FILE = "multilingual_zh_ja_yue_char_del.tiktoken"  # utils/tokenizer.get_tokenizer
CODEC_FILE = "codec.pth"  # infer_v2_5: os.path.join(model_dir, "codec.pth")


@dataclass(frozen=True)
class CheckpointLayoutV25:
    root: Path

    def config(self) -> Path:
        return self.root / "config.yaml"

    def tokenizer(self) -> Path:
        return self.root / TOKENIZER_FILE

    def codec(self) -> Path:
        return self.root / CODEC_FILE

    # files named by config.yaml
    def gpt(self, cfg: IndexTTS25Config) -> Path:
        return self.root / cfg.gpt_checkpoint

    def s2mel(self, cfg: IndexTTS25Config) -> Path:
        return self.root / cfg.s2mel_checkpoint

    def w2v_stat(self, cfg: IndexTTS25Config) -> Path:
        return self.root / cfg.w2v_stat

    def spk_matrix(self, cfg: IndexTTS25Config) -> Path:
        return self.root / cfg.spk_matrix

    def emo_matrix(self, cfg: IndexTTS25Config) -> Path:
        return self.root / cfg.emo_matrix

    def qwen_emo_dir(self, cfg: IndexTTS25Config) -> Path:
        return self.root / cfg.qwen_emo_path

    # optional user files upstream reads when present
    def glossary(self) -> Path:
        return self.root / "glossary.yaml"

    # released but never read by 2.5 inference (the release repository still carries them)
    def bpe_model(self) -> Path:
        return self.root / "bpe.model"

    # auxiliary models, downloaded upstream into hf_cache/ (same files as 2.0)
    @property
    def hf_cache(self) -> Path:
        return self.root / "hf_cache"

    def w2v_bert_dir(self) -> Path:
        return self.hf_cache / "w2v-bert-2.0"

    def campplus(self) -> Path:
        return self.hf_cache / "campplus_cn_common.bin"

    def bigvgan_dir(self) -> Path:
        return self.hf_cache / "bigvgan"

    def required_files(self, cfg: IndexTTS25Config) -> dict[str, Path]:
        """Every file 2.5 inference reads, by a short name used in errors and the manifest."""
        return {
            "config": self.config(),
            "tokenizer": self.tokenizer(),
            "gpt": self.gpt(cfg),
            "codec": self.codec(),
            "s2mel": self.s2mel(cfg),
            "w2v_stat": self.w2v_stat(cfg),
            "spk_matrix": self.spk_matrix(cfg),
            "emo_matrix": self.emo_matrix(cfg),
            "w2v_bert_config": self.w2v_bert_dir() / "config.json",
            "w2v_bert_preprocessor": self.w2v_bert_dir() / "preprocessor_config.json",
            "w2v_bert_weights": self.w2v_bert_dir() / "model.safetensors",
            "campplus": self.campplus(),
            "bigvgan_config": self.bigvgan_dir() / "config.json",
            "bigvgan_weights": self.bigvgan_dir() / "bigvgan_generator.pt",
        }

    def optional_files(self, cfg: IndexTTS25Config) -> dict[str, Path]:
        """Released or user files inference can do without (QwenEmotion only for emotion from text)."""
        return {"qwen_emo": self.qwen_emo_dir(cfg), "glossary": self.glossary(), "bpe_model": self.bpe_model()}

    def check(self) -> IndexTTS25Config:
        """Load the config and verify that every required file exists; name the missing ones."""
        if not self.root.is_dir():
            raise ConfigError(f"checkpoint directory not found: {self.root}")
        cfg = load_config_v25(self.config())
        missing = [f"{k} ({p})" for k, p in self.required_files(cfg).items() if not p.is_file()]
        if missing:
            raise ConfigError(f"IndexTTS-2.5 checkpoint directory {self.root} is incomplete; missing: "
                              + ", ".join(missing))
        return cfg


__all__ = ["CheckpointLayoutV25", "TOKENIZER_FILE", "CODEC_FILE"]
