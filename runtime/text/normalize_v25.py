"""Chinese/English normalization as IndexTTS-2.5 calls it (``front.TextNormalizer.normalize`` at
upstream HEAD, which 2.5 introduced), torch-free.

Differences from the 2.0 port in normalize.py, all of them upstream behaviour:
- ``<word|reading>`` pronunciation annotations are swapped for ``PRONPLACEHOLDER<a..>PRONPLACEHOLDER``
  before anything else and restored at the very end;
- upstream's own placeholders (``<H>`` in hyphenated terms, ``<pinyin_a>``, ``<n_a>`` for
  ``中文·中文`` names), which ``wetext`` leaves intact (checked), so spacing matches upstream;
- Chinese names are protected; the optional ``glossary.yaml`` term readings are applied.
Kept from the 2.0 port (stated deviations): ``wetext`` (upstream's macOS/Windows normalizer; on
Linux upstream uses WeTextProcessing, same grammars), and a normalizer failure keeps the text
instead of upstream's empty string for Chinese. Placeholder letters follow first occurrence;
upstream numbers them in ``set`` order, which only matters when one tone-pinyin is a substring
of another in the same text (then upstream's output depends on PYTHONHASHSEED).
"""

from __future__ import annotations

import re
from pathlib import Path

from .normalize import CHAR_REP_MAP, CONTRACTION, PINYIN_TONE, TECH_TERM, ZH_CHAR_REP_MAP, TextNormalizer, use_chinese
from .tokenizer import TextError

ANNOTATION = re.compile(r"<([^|>\n]+)\|([^>\n]+)>")
NAME = re.compile(r"[\u4e00-\u9fff]+(?:[-·—][\u4e00-\u9fff]+){1,2}", re.IGNORECASE)
_REP = re.compile("|".join(re.escape(k) for k in CHAR_REP_MAP))
_ZH_REP = re.compile("|".join(re.escape(k) for k in ZH_CHAR_REP_MAP))
_JQX_U = re.compile(r"([jqx])[uü](n|e|an)*(\d)", re.IGNORECASE)


def alpha_tag(n: int) -> str:
    """0 → a, 25 → z, 26 → aa (bijective base 26), upstream's annotation placeholder letters."""
    s = ""
    while True:
        s = chr(ord("a") + n % 26) + s
        n = n // 26 - 1
        if n < 0:
            return s


def correct_pinyin(p: str) -> str:
    """j/q/x + u/ü → v, then upper case (ju4 → JV4); other syllables are returned unchanged."""
    if p[0] not in "jqxJQX":
        return p
    return _JQX_U.sub(r"\g<1>v\g<2>\g<3>", p).upper()


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class TextNormalizerV25(TextNormalizer):
    def __init__(self, glossary: dict | None = None):
        super().__init__()
        self.glossary: dict = dict(glossary or {})

    def load_glossary(self, path: str | Path) -> bool:
        """``{term: reading}`` or ``{term: {zh: ..., en: ...}}``; False when the file is absent."""
        import yaml

        path = Path(path)
        if not path.is_file():
            return False
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise TextError(f"{path}: not a valid glossary YAML: {e}") from None
        if not isinstance(data, dict):  # upstream silently ignores such a file
            return False
        for term, value in data.items():
            ok = isinstance(value, str) or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))
            if not isinstance(term, str) or not ok:
                raise TextError(f"{path}: glossary entry {term!r} must map to a string or to {{zh: ..., en: ...}}")
        self.glossary = data
        return True

    def _apply_glossary(self, text: str, lang: str) -> str:
        for term in sorted(self.glossary, key=len, reverse=True):
            value = self.glossary[term]
            repl = value.get(lang, term) if isinstance(value, dict) else value
            # a string replacement, as upstream: backslash escapes in readings are interpreted
            text = re.compile(re.escape(term), re.IGNORECASE).sub(repl, text)
        return text

    def normalize(self, text: str) -> str:
        ok = self._load()
        notes: dict[str, str] = {}

        def protect(m: re.Match) -> str:
            key = f"PRONPLACEHOLDER{alpha_tag(len(notes))}PRONPLACEHOLDER"
            notes[key] = m.group(0)
            return key

        text = ANNOTATION.sub(protect, text)
        if use_chinese(text):
            text = CONTRACTION.sub(r"\1 is", text)
            if self.glossary:
                text = self._apply_glossary(text, "zh")
            text = text.rstrip()
            tech = sorted(sorted(set(TECH_TERM.findall(text))), key=len, reverse=True)
            for term in tech:
                text = text.replace(term, term.replace("-", "<H>"))
            tones = _unique(["".join(g) for g in PINYIN_TONE.findall(text)])
            for i, p in enumerate(tones):
                text = text.replace(p, f"<pinyin_{chr(ord('a') + i)}>")
            names = _unique(NAME.findall(text))
            for i, name in enumerate(names):
                text = text.replace(name, f"<n_{chr(ord('a') + i)}>")
            out = self._run(self._zh, text) if ok else text
            for i, name in enumerate(names):
                out = out.replace(f"<n_{chr(ord('a') + i)}>", name)
            for i, p in enumerate(tones):
                out = out.replace(f"<pinyin_{chr(ord('a') + i)}>", correct_pinyin(p))
            if tech:
                out = re.sub(r"\s*<H>\s*", "-", out)
            out = _ZH_REP.sub(lambda m: ZH_CHAR_REP_MAP[m.group()], out)
        else:
            text = CONTRACTION.sub(r"\1 is", text)
            if self.glossary:
                text = self._apply_glossary(text, "en")
            tech = sorted(sorted(set(TECH_TERM.findall(text))), key=len, reverse=True)
            for term in tech:
                text = text.replace(term, term.replace("-", "<H>"))
            out = self._run(self._en, text) if ok else text
            if tech:
                out = re.sub(r"\s*<H>\s*", "-", out)
            out = _REP.sub(lambda m: CHAR_REP_MAP[m.group()], out)
        for key, original in notes.items():
            out = out.replace(key, original)
        return out


__all__ = ["TextNormalizerV25", "alpha_tag", "correct_pinyin", "ANNOTATION"]
