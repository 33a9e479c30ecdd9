"""IndexTTS-2.5's text tokenizer and language ids (torch-free).

The tokenizer is a tiktoken byte-level BPE over ``multilingual_zh_ja_yue_char_del.tiktoken``
(58 836 ranks in the release) followed by 1 673 Whisper-style special tokens, registered in the
order below (upstream ``indextts/utils/tokenizer.get_encoding``): that order fixes every special
token's id, so it is part of the checkpoint's ABI. Upstream wraps the encoding in
``whisper.tokenizer.Tokenizer``, whose ``encode`` is ``encoding.encode``; we call tiktoken
directly, so the ids are tiktoken's own (no re-implementation of the BPE).

The GPT's language embedding is indexed by a *second* table: the position of the code in
``LANGUAGES`` (106 codes; ``lang_embedding`` has 107 rows). Only the first 99 codes are special
tokens, so ``<|yue|>`` and ``<|zhen|>`` in the text prefix are encoded as plain text.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from .tokenizer import TextError

# upstream's LANGUAGES dict, keys in order (the values are unused names)
LANGUAGES: tuple[str, ...] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id",
    "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg",
    "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br",
    "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so",
    "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt",
    "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue", "minnan",
    "wuyu", "dialect", "zh/en", "en/zh", "common",
)
LANGUAGE_DICT: dict[str, int] = {code: i for i, code in enumerate(LANGUAGES)}
NUM_LANGUAGE_ROWS = len(LANGUAGES) + 1  # nn.Embedding(len(LANGUAGE_DICT) + 1, D)
NUM_SPECIAL_LANGUAGES = 99  # get_tokenizer(num_languages=99)
# what infer_v2_5 and the web UI route: front-end modes, not all of them table codes
FRONTEND_LANGUAGES = ("zh", "en", "zhen", "ja", "es", "ar")

AUDIO_EVENTS = ("ASR", "AED", "SER", "Speech", "/Speech", "BGM", "/BGM", "Laughter", "/Laughter", "Applause",
                "/Applause")
EMOTIONS = ("HAPPY", "SAD", "ANGRY", "NEUTRAL")
TTS_VOCAL_TOKENS = ("TTS/B", "TTS/O", "TTS/Q", "TTS/A", "TTS/CO", "TTS/CL", "TTS/H",
                    *(f"TTS/SP{i:02d}" for i in range(1, 14)))

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    *(f"<|{code}|>" for code in LANGUAGES[:NUM_SPECIAL_LANGUAGES]),
    *(f"<|{e}|>" for e in AUDIO_EVENTS),
    *(f"<|{e}|>" for e in EMOTIONS),
    "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
    *(f"<|SPECIAL_TOKEN_{i}|>" for i in range(1, 31)),  # SPECIAL_TOKEN_1/2 wrap CMU / pinyin readings
    *(f"<|{t}|>" for t in TTS_VOCAL_TOKENS),
    *(f"<|{i * 0.02:.2f}|>" for i in range(1501)),  # Whisper's timestamps <|0.00|> .. <|30.00|>
)

# GPT-2's pre-tokenizer pattern (tiktoken syntax: \p{L} letters, \p{N} numbers)
PAT_STR = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def lang_to_token(lang: str) -> int:
    """Row of ``lang_embedding`` for ``lang`` (upstream: anything unknown, e.g. ``zhen``, → common)."""
    code = lang.lower()
    return LANGUAGE_DICT.get(code, LANGUAGE_DICT["common"])


def check_language(lang: str) -> str:
    """Lower-cased ``lang`` if it is a front-end mode or a table code; a one-line error otherwise.

    Stricter than upstream, which maps any typo silently to the ``common`` row and encodes the
    bogus ``<|xx|>`` prefix as plain text."""
    if not isinstance(lang, str) or not lang.strip():
        raise TextError(f"language must be one of {', '.join(FRONTEND_LANGUAGES)} (or a code of the 2.5 table)")
    code = lang.strip().lower()
    if code not in LANGUAGE_DICT and code not in FRONTEND_LANGUAGES:
        raise TextError(f"unknown language {lang!r}: expected one of {', '.join(FRONTEND_LANGUAGES)} "
                        f"(or a code of the 2.5 language table)")
    return code


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """A ``.tiktoken`` file: one ``<base64 token> <rank>`` per line, ranks 0..n-1."""
    path = Path(path)
    if not path.is_file():
        raise TextError(f"tokenizer file not found: {path}")
    ranks: dict[bytes, int] = {}
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            parts = raw.split()
            if len(parts) != 2:
                raise TextError(f"{path}:{lineno}: expected '<base64 token> <rank>', got {raw[:60]!r}")
            try:
                tok, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
            except (binascii.Error, ValueError):
                raise TextError(f"{path}:{lineno}: not a base64 token and an integer rank: {raw[:60]!r}") from None
            if tok in ranks:
                raise TextError(f"{path}:{lineno}: token {tok!r} listed twice")
            ranks[tok] = rank
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TextError(f"{path}: ranks must be exactly 0..{len(ranks) - 1}")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:  # tiktoken cannot encode a byte it has no rank for
        raise TextError(f"{path}: {len(missing)} single bytes have no rank (e.g. {bytes([missing[0]])!r}); "
                        f"a byte-level BPE needs all 256")
    return ranks


class MultilingualTokenizer:
    """``encode(text)`` = upstream's ``tokenizer.encode(text, allowed_special="all")``."""

    def __init__(self, path: str | Path, number_text_tokens: int | None = None):
        import tiktoken

        self.path = Path(path)
        ranks = read_ranks(self.path)
        n_vocab = len(ranks) + len(SPECIAL_TOKENS)
        if number_text_tokens is not None and n_vocab != number_text_tokens:
            raise TextError(f"{self.path}: {len(ranks)} ranks + {len(SPECIAL_TOKENS)} special tokens = {n_vocab}, "
                            f"but config.yaml gpt.number_text_tokens is {number_text_tokens}")
        self.specials = {tok: len(ranks) + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self.encoding = tiktoken.Encoding(name=self.path.name, pat_str=PAT_STR, mergeable_ranks=ranks,
                                          special_tokens=self.specials, explicit_n_vocab=n_vocab)
        self.n_vocab = n_vocab

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special="all")

    def token_len(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)

    def special_id(self, token: str) -> int:
        if token not in self.specials:
            raise TextError(f"{token!r} is not a special token of the 2.5 tokenizer")
        return self.specials[token]


__all__ = ["LANGUAGES", "LANGUAGE_DICT", "NUM_LANGUAGE_ROWS", "SPECIAL_TOKENS", "PAT_STR", "FRONTEND_LANGUAGES",
           "lang_to_token", "check_language", "read_ranks", "MultilingualTokenizer"]
