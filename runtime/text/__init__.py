"""Text front end (torch-free): normalization, CJK split + SentencePiece, segmentation."""

from __future__ import annotations

import unicodedata

from ..errors import OptionError
from ..numerics import is_int
from .normalize import TextNormalizer, use_chinese
from .segment import split_segments
from .tokenizer import TextError, TextTokenizer, tokenize_by_cjk_char

HARD_MAX_TEXT_TOKENS = 600  # gpt.max_text_tokens of the released config: the text position table


def clean_text(text: str) -> str:
    """Drop control and format characters (and unpaired surrogates) the normalizer cannot take."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn") and ch not in "\n\t":
            continue
        out.append(ch)
    return "".join(out)


def text_to_segments(text: str, normalizer: TextNormalizer, tokenizer: TextTokenizer, max_tokens: int = 120,
                     quick_streaming_tokens: int = 0, hard_limit: int = HARD_MAX_TEXT_TOKENS) -> list[list[int]]:
    """Text → token ids per segment, each segment at most ``max_tokens`` long."""
    if not isinstance(text, str):
        raise TextError(f"text must be a string, got {type(text).__name__}")
    if not (is_int(max_tokens) and 1 <= max_tokens <= hard_limit):
        raise OptionError("max_text_tokens_per_segment", max_tokens, f"must be an integer in [1, {hard_limit}] "
                          f"(the GPT's text position table holds {hard_limit} tokens)")
    cleaned = clean_text(text)
    if not cleaned.strip():
        raise TextError("empty text: nothing to synthesize")
    if len(cleaned.strip()) == 1:
        # upstream TextTokenizer.encode: a one-character text is encoded as written (no
        # normalization, no CJK split, no upper-casing: "a" stays "a", "1" stays "1")
        pieces = tokenizer.encode_as_written(cleaned)
    else:
        pieces = tokenizer.tokenize(normalizer.normalize(cleaned))
    if not pieces:
        raise TextError(f"text {text[:40]!r} normalizes to nothing speakable")
    out = []
    for seg in split_segments(pieces, max_tokens, quick_streaming_tokens):
        for j in range(0, len(seg), max_tokens):  # guard: no segment over the limit, ever
            out.append(tokenizer.convert_tokens_to_ids(seg[j:j + max_tokens]))
    return out


__all__ = ["TextNormalizer", "TextTokenizer", "TextError", "split_segments", "text_to_segments",
           "tokenize_by_cjk_char", "use_chinese", "clean_text", "HARD_MAX_TEXT_TOKENS"]
