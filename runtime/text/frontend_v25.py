"""IndexTTS-2.5's text front end, in upstream's order (``infer_v2_5.infer_generator``), torch-free.

text, lang → [(segment text, token ids)], each segment encoded as ``"<|lang|> " + segment``:
1. punctuation map first (full-width → ASCII; also ``:`` → ``,``, before any normalizer sees it);
2. normalization: zh / zhen / en → TextNormalizer (as 2.0: front.py), es → normalize_es (upstream: NeMo),
   ja and ar → none (NeMo has no Japanese grammar; upstream never calls it for Arabic);
3. case: ja / zh / zhen / en lower-cased, es upper-cased, others unchanged;
4. pronunciation annotations: ``<行|XING2>`` → ``<|SPECIAL_TOKEN_2|>XING2<|SPECIAL_TOKEN_2|>`` (a CJK
   word), ``<going|G OW1>`` → ``SPECIAL_TOKEN_1`` (anything else), ``<上手|じょうず>`` → `` じょうず ``
   (an all-hiragana or all-katakana reading replaces the word, spaced);
5. ja: MeCab word segmentation (ja_g2p.py);
6. every ``<|x|>`` upper-cased (the annotations' tokens survived step 3 in lower case otherwise);
7. split by token budget ``min(max_tokens, capacity - 2) - len(prefix)``, at punctuation, never
   inside an annotation.
The GPT later drops ids 0 and 1 (``"!"`` and ``'"'`` in this vocabulary) as start/stop markers:
that is upstream's behaviour and happens in the model, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .ja_g2p import JapaneseSegmenter
from .multilingual import MultilingualTokenizer, check_language
from .normalize import CHAR_REP_MAP
from .normalize_es import normalize_es
from .normalize import ANNOTATION, TextNormalizer
from .tokenizer import TextError

_CLEAN = re.compile("|".join(re.escape(k) for k in CHAR_REP_MAP))
_HAN = re.compile(r"[\u4e00-\u9fff]")
_KANA = re.compile(r"[\u3040-\u309F]+|[\u30A0-\u30FF]+")
_SPECIAL = re.compile(r"<\|([^|]+)\|>")
_PROTECTED = re.compile(r"<\|SPECIAL_TOKEN_\d+\|>.*?<\|SPECIAL_TOKEN_\d+\|>")
_BREAK = re.compile(r"(?<=[，。！？、；：,\.!\?;:\n])")


def apply_pronunciation_annotations(text: str) -> str:
    def sub(m: re.Match) -> str:
        word, reading = m.group(1), m.group(2).upper()
        if _KANA.fullmatch(reading):
            return f" {reading} "
        token = "SPECIAL_TOKEN_2" if _HAN.search(word) else "SPECIAL_TOKEN_1"
        return f"<|{token}|>{reading}<|{token}|>"

    return ANNOTATION.sub(sub, text)


def _pack(items: list[str], budget: int, n) -> list[str]:
    """Concatenate consecutive items while ``n(current + item) <= budget`` (upstream's two loops)."""
    out, cur = [], ""
    for item in items:
        if cur and n(cur + item) > budget:
            out.append(cur)
            cur = item
        else:
            cur += item
    if cur:
        out.append(cur)
    return out


@dataclass(frozen=True)
class Segment:
    text: str  # the model's input text (normalized, re-cased), without the language prefix
    ids: list[int]  # encode("<|lang|> " + text), before the GPT strips ids 0/1


class TextFrontendV25:
    def __init__(self, tokenizer: MultilingualTokenizer, text_capacity: int, *, normalize: bool = True,
                 glossary: str | Path | None = None, ja: JapaneseSegmenter | None = None,
                 normalizer: TextNormalizer | None = None):
        """``text_capacity``: rows of the GPT's text position table (gpt.max_text_tokens + 2).
        ``normalizer``: the zh/en normalizer (default: upstream's, WeTextProcessing on Linux)."""
        self.tok = tokenizer
        self.capacity = text_capacity
        self.normalize = normalize
        self.normalizer = normalizer or TextNormalizer()
        if glossary is not None:
            self.normalizer.load_glossary_yaml(glossary)
        self.ja = ja if ja is not None else JapaneseSegmenter(g2p_ratio=0.0)

    def model_text(self, text: str, lang: str) -> str:
        """Steps 1–6: the text the tokenizer sees (without the language prefix)."""
        lang = check_language(lang)
        text = _CLEAN.sub(lambda m: CHAR_REP_MAP[m.group()], text)
        if self.normalize:
            if lang in ("zh", "zhen", "en"):
                text = self.normalizer.normalize(text)
            elif lang == "es":
                text = normalize_es(text)
        if lang in ("ja", "zh", "zhen", "en"):
            text = text.lower()
        elif lang == "es":
            text = text.upper()
        text = apply_pronunciation_annotations(text)
        if lang == "ja":
            text = self.ja.process(text)
        return _SPECIAL.sub(lambda m: f"<|{m.group(1).upper()}|>", text)

    def split(self, text: str, max_tokens: int, prefix: str) -> list[str]:
        n = self.tok.token_len
        budget = max(1, min(max_tokens, self.capacity - 2) - n(prefix))
        if n(text) <= budget:
            return [text]
        chunks: list[str] = []
        pos, pieces = 0, []
        for m in _PROTECTED.finditer(text):
            if m.start() > pos:
                pieces.append((text[pos:m.start()], False))
            pieces.append((m.group(0), True))
            pos = m.end()
        if pos < len(text):
            pieces.append((text[pos:], False))
        for piece, atomic in pieces:
            if atomic:
                chunks.append(piece)
                continue
            for part in _BREAK.split(piece):
                if part:  # no punctuation to cut at: cut between characters
                    chunks += [part] if n(part) <= budget else _pack(list(part), budget, n)
        return _pack(chunks, budget, n) or [text]  # greedily re-join while the budget allows

    def prepare(self, text: str, lang: str, max_tokens: int = 120) -> list[Segment]:
        if not isinstance(text, str):
            raise TextError(f"text must be a string, got {type(text).__name__}")
        if not 1 <= max_tokens <= self.capacity - 2:
            raise TextError(f"max_text_tokens_per_segment={max_tokens} must be in [1, {self.capacity - 2}] "
                            f"(the GPT's text position table holds {self.capacity} rows)")
        lang = check_language(lang)
        body = self.model_text(text, lang)
        if not body.strip():  # upstream would synthesize the bare language prefix
            raise TextError("empty text: nothing to synthesize")
        prefix = f"<|{lang}|> "
        out = []
        for seg in self.split(body, max_tokens, prefix):
            ids = self.tok.encode(prefix + seg)
            kept = sum(1 for i in ids if i > 1) + 2  # [start, ids without 0/1, stop]
            if kept > self.capacity:  # an annotation longer than the table: upstream crashes
                raise TextError(f"segment {seg[:30]!r}… needs {kept} text positions; the GPT has {self.capacity}")
            out.append(Segment(seg, ids))
        return out


__all__ = ["TextFrontendV25", "Segment", "apply_pronunciation_annotations"]
