"""CJK splitting, upper-casing and SentencePiece tokenization (upstream ``TextTokenizer``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..config import ConfigError
from ..errors import UsageError

log = logging.getLogger(__name__)

# upstream's CJK ranges (common.tokenize_by_CJK_char)
_CJK = re.compile(r"([\u1100-\u11ff\u2e80-\ua4cf\ua840-\uD7AF\uF900-\uFAFF\uFE30-\uFE4F\uFF65-\uFFDC"
                  r"\U00020000-\U0002FFFF])")


class TextError(UsageError):
    """Text that cannot be turned into segments (empty, nothing speakable): exit code 2."""


def tokenize_by_cjk_char(line: str, do_upper_case: bool = True) -> str:
    """Spaces around every CJK character; everything upper-cased ("你好 hello" → "你 好 HELLO")."""
    parts = _CJK.split(line.strip())
    return " ".join(w.strip().upper() if do_upper_case else w.strip() for w in parts if w.strip())


class TextTokenizer:
    def __init__(self, bpe_model: str | Path):
        import sentencepiece as spm

        path = Path(bpe_model)
        if not path.is_file():  # a damaged engines or checkpoint directory: a data error, not the text's
            raise ConfigError(f"BPE model not found: {path}")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as e:
            raise ConfigError(f"BPE model {path} is not a valid SentencePiece model: {e}") from None
        self.path = path
        self.unk_id = self.sp.unk_id()

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    def tokenize(self, normalized: str) -> list[str]:
        """Pieces of already-normalized text (CJK split and upper-cased here)."""
        if not normalized.strip():
            return []
        return self.sp.Encode(tokenize_by_cjk_char(normalized), out_type=str)

    def encode_as_written(self, text: str) -> list[str]:
        """Pieces of ``text`` exactly as given (upstream's path for a one-character text)."""
        return self.sp.Encode(text, out_type=str) if text else []

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        ids = [self.sp.PieceToId(t) for t in tokens]
        unknown = [t for t, i in zip(tokens, ids) if i == self.unk_id]
        if unknown:
            log.warning("%d text piece(s) not in the BPE vocabulary map to <unk>: %s", len(unknown), unknown[:10])
        return ids

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.sp.IdToPiece(i) for i in ids]
