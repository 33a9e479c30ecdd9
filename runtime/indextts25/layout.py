"""The released IndexTTS-2.5 checkpoint directory (docs/indextts-2.5.md §2), torch-free.

IndexTTS-2's layout (config-named files, the three auxiliary models in ``hf_cache/``) with two
files swapped: the tiktoken rank file replaces ``bpe.model`` (still in the release repository,
never read by 2.5 inference) and ``codec.pth`` replaces MaskGCT's
``semantic_codec_model.safetensors``. Names that upstream hard-codes rather than reading from
config.yaml are constants here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..indextts2.layout import CheckpointLayout
from .config import IndexTTS25Config, load_config_v25

TOKENIZER_FILE = "multilingual_zh_ja_yue_char_del.tiktoken"  # utils/tokenizer.get_tokenizer
CODEC_FILE = "codec.pth"  # infer_v2_5: os.path.join(model_dir, "codec.pth")


@dataclass(frozen=True)
class CheckpointLayoutV25(CheckpointLayout):
    family = "IndexTTS-2.5"

    def tokenizer(self) -> Path:
        return self.root / TOKENIZER_FILE

    def codec(self) -> Path:
        return self.root / CODEC_FILE

    def qwen_emo_dir(self, cfg: IndexTTS25Config) -> Path:
        return self.root / cfg.qwen_emo_path

    def glossary(self) -> Path:  # optional user term readings, read when present
        return self.root / "glossary.yaml"

    def read_config(self) -> IndexTTS25Config:
        return load_config_v25(self.config())

    def required_files(self, cfg: IndexTTS25Config) -> dict[str, Path]:
        """Every file 2.5 inference reads, by a short name used in errors and the manifest."""
        shared = super().required_files(cfg)
        files = {"config": shared["config"], "tokenizer": self.tokenizer(), "gpt": shared["gpt"],
                 "codec": self.codec()}
        files.update((k, v) for k, v in shared.items() if k not in ("config", "gpt", "bpe_model", "semantic_codec"))
        files["w2v_bert_preprocessor"] = self.w2v_bert_dir() / "preprocessor_config.json"
        return files

    def optional_files(self, cfg: IndexTTS25Config) -> dict[str, Path]:
        """Released or user files inference can do without (QwenEmotion only for emotion from text)."""
        return {"qwen_emo": self.qwen_emo_dir(cfg), "glossary": self.glossary(), "bpe_model": self.bpe_model()}


__all__ = ["CheckpointLayoutV25", "TOKENIZER_FILE", "CODEC_FILE"]
