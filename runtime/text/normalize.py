"""Text normalization as upstream's ``TextNormalizer`` (indextts/utils/front.py), torch-free.

Uses ``wetext`` (the offline runtime of WeTextProcessing's grammars; upstream's macOS/Windows
path). Chinese mode when the text has CJK characters, has no Latin letters, is an e-mail, or has
pinyin with tones; English mode otherwise. Hyphenated technical terms (GPT-5, F5-TTS) and pinyin
tones (xuan4) are protected from the normalizer, then the punctuation map is applied.
Not reproduced: upstream's user glossary, ``<char|reading>`` annotations and Chinese-name
protection (they change only texts that use those features).
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

CHAR_REP_MAP = {
    "：": ",", "；": ",", ";": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": " ", "·": "-",
    "、": ",", "...": "…", ",,,": "…", "，，，": "…", "……": "…", "“": "'", "”": "'", '"': "'",
    "‘": "'", "’": "'", "（": "'", "）": "'", "(": "'", ")": "'", "《": "'", "》": "'", "【": "'",
    "】": "'", "[": "'", "]": "'", "—": "-", "～": "-", "~": "-", "「": "'", "」": "'", ":": ",",
}
ZH_CHAR_REP_MAP = {"$": ".", **CHAR_REP_MAP}
_REP = re.compile("|".join(re.escape(k) for k in CHAR_REP_MAP))
_ZH_REP = re.compile("|".join(re.escape(k) for k in ZH_CHAR_REP_MAP))

PINYIN_TONE = re.compile(
    r"(?<![a-z])((?:[bpmfdtnlgkhjqxzcsryw]|[zcs]h)?(?:[aeiouüv]|[ae]i|u[aio]|ao|ou|i[aue]|[uüv]e|[uvü]ang?"
    r"|uai|[aeiuv]n|[aeio]ng|ia[no]|i[ao]ng)|ng|er)([1-5])", re.IGNORECASE)
TECH_TERM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+")
CONTRACTION = re.compile(r"(what|where|who|which|how|t?here|it|s?he|that|this)'s", re.IGNORECASE)
EMAIL = re.compile(r"^[a-zA-Z0-9]+@[a-zA-Z0-9]+\.[a-zA-Z]+$")


def use_chinese(s: str) -> bool:
    if re.search(r"[\u4e00-\u9fff]", s) or not re.search(r"[a-zA-Z]", s) or EMAIL.match(s):
        return True
    return bool(PINYIN_TONE.search(s))


def _placeholder(tag: str, i: int) -> str:
    # letters only: the normalizers read digits and punctuation aloud but pass Latin words through
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(ord("A") + r) + letters
    return f"ZQX{tag}{letters}Q"


def _protect(text: str, pattern: re.Pattern, tag: str) -> tuple[str, list[str]]:
    found: list[str] = []

    def sub(m: re.Match) -> str:
        found.append(m.group(0))
        return " " + _placeholder(tag, len(found) - 1) + " "

    return pattern.sub(sub, text), found


def _restore(text: str, found: list[str], tag: str) -> str:
    for i in reversed(range(len(found))):  # reversed: placeholder "...AQ" is not a prefix issue then
        text = re.sub(rf"\s*{_placeholder(tag, i)}\s*", " " + found[i] + " ", text)
    return re.sub(r"\s{2,}", " ", text).strip() if found else text


class TextNormalizer:
    """Builds the wetext normalizers lazily and once."""

    def __init__(self) -> None:
        self._zh = self._en = None
        self._unavailable = False

    def _load(self) -> bool:
        if self._zh is not None or self._unavailable:
            return not self._unavailable
        try:
            from wetext import Normalizer

            self._zh = Normalizer(lang="zh", operator="tn", remove_erhua=False)
            self._en = Normalizer(lang="en", operator="tn")
        except Exception as e:  # missing wheel or grammar: keep going with punctuation mapping only
            log.warning("text normalization disabled (wetext unavailable: %s); numbers are read as written", e)
            self._unavailable = True
        return not self._unavailable

    def _run(self, fst, text: str) -> str:
        # wetext asserts on some inputs (e.g. a lone tab); upstream catches that too and keeps the
        # raw text for English (for Chinese it returns "", silently dropping the text: we keep it)
        try:
            return fst.normalize(text)
        except Exception as e:  # noqa: BLE001 — any normalizer failure degrades to the raw text
            log.warning("text normalizer failed on %r (%s: %s); using the text as written",
                        text[:40], type(e).__name__, e)
            return text

    def normalize(self, text: str) -> str:
        ok = self._load()
        text = re.sub(r"[\t\r\f\v]+", " ", text)
        if use_chinese(text):
            text = CONTRACTION.sub(r"\1 is", text)
            text, tech = _protect(text.rstrip(), TECH_TERM, "TECH")
            text, tones = _protect(text, PINYIN_TONE, "PY")
            out = self._run(self._zh, text) if ok else text
            out = _restore(_restore(out, tones, "PY"), tech, "TECH")
            return _ZH_REP.sub(lambda m: ZH_CHAR_REP_MAP[m.group()], out)
        text = CONTRACTION.sub(r"\1 is", text)
        text, tech = _protect(text, TECH_TERM, "TECH")
        out = self._run(self._en, text) if ok else text
        out = _restore(out, tech, "TECH")
        return _REP.sub(lambda m: CHAR_REP_MAP[m.group()], out)
