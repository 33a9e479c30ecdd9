"""Text normalization as upstream's ``TextNormalizer`` (indextts/utils/front.py at HEAD), torch-free.

Per text, in upstream's order:

1. ``<char|reading>`` pronunciation annotations (e.g. ``银<行|hang2>``) are swapped for letter
   placeholders, so the grammar cannot read their digits, and put back at the very end;
2. Chinese mode when the text has CJK characters, no Latin letters, is an e-mail, or has pinyin
   with a tone digit (``xuan4``); English mode otherwise;
3. ``what's`` → ``what is`` (a few such words), then the user glossary (``{term: reading}`` or
   ``{term: {"zh": ..., "en": ...}}``, case-insensitive, longest term first);
4. hyphens in technical terms (``GPT-5``) become ``<H>``; in Chinese mode also tone pinyin
   (``<pinyin_a>``) and names with a middle dot (``克里斯托弗·诺兰`` → ``<n_a>``) are protected;
5. the grammar (``grammars.py``: WeTextProcessing on Linux), then everything is restored — pinyin
   after j/q/x with a u/ü final is respelled with v and upper-cased (``xuan4`` → ``XVAN4``);
6. the punctuation map (``：`` → ``,``, quotes → ``'``, ...; ``$`` → ``.`` in Chinese mode).

The placeholders are upstream's own strings on purpose: the grammar's output around them (spaces,
what it reads next to them) is part of what upstream produces.

Deviations: where the Chinese grammar raises, upstream returns an empty text (the sentence is
silently dropped); we warn and keep the text as written. Duplicate placeholders are numbered in
order of first occurrence (upstream: in ``set`` order, which depends on the hash seed; the two
agree whenever no protected string is a substring of another).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .grammars import Grammars, load_grammars

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
NAME = re.compile(r"[\u4e00-\u9fff]+(?:[-·—][\u4e00-\u9fff]+){1,2}")
TECH_TERM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+")
CONTRACTION = re.compile(r"(what|where|who|which|how|t?here|it|s?he|that|this)'s", re.IGNORECASE)
EMAIL = re.compile(r"^[a-zA-Z0-9]+@[a-zA-Z0-9]+\.[a-zA-Z]+$")
ANNOTATION = re.compile(r"<([^|>\n]+)\|([^>\n]+)>")
_JQX_U = re.compile(r"([jqx])[uü](n|e|an)*(\d)", re.IGNORECASE)


def use_chinese(s: str) -> bool:
    if re.search(r"[\u4e00-\u9fff]", s) or not re.search(r"[a-zA-Z]", s) or EMAIL.match(s):
        return True
    return bool(PINYIN_TONE.search(s))


def _letters(n: int) -> str:
    """0 → a, 25 → z, 26 → aa, ... (the pronunciation placeholders' tags)."""
    s = ""
    while True:
        s = chr(ord("a") + n % 26) + s
        n = n // 26 - 1
        if n < 0:
            return s


def respell_pinyin(p: str) -> str:
    """j/q/x + u/ü (+ n, e, an) + tone → v, upper-cased (``xuan4`` → ``XVAN4``); others unchanged."""
    if p[0] not in "jqxJQX":
        return p
    return _JQX_U.sub(lambda m: m.group(1) + "v" + (m.group(2) or "") + m.group(3), p).upper()


def _protect_list(text: str, found: list[str], tag: str) -> tuple[str, list[str]]:
    """Replace every distinct string in ``found`` by ``<{tag}_{a, b, ...}>`` (plain str.replace)."""
    items = list(dict.fromkeys(found))
    for i, item in enumerate(items):
        text = text.replace(item, f"<{tag}_{chr(ord('a') + i)}>")
    return text, items


def _restore_list(text: str, items: list[str], tag: str, respell=lambda s: s) -> str:
    for i, item in enumerate(items):
        text = text.replace(f"<{tag}_{chr(ord('a') + i)}>", respell(item))
    return text


class TextNormalizer:
    """Builds the grammars lazily and once; ``glossary`` maps a term to its reading (see module doc)."""

    def __init__(self, glossary: dict | None = None, backend: str = "auto") -> None:
        self._grammars: Grammars | None = None
        self._loaded = False
        self.backend = backend
        self.glossary: dict = {}
        if glossary:
            self.load_glossary(glossary)

    # ------------------------------------------------------------------------------ glossary

    def load_glossary(self, glossary: dict, source: str = "glossary") -> None:
        """Add terms (upstream ``load_glossary``: an update). Readings must be strings, or a dict
        of ``zh``/``en`` strings; anything else is a clear error naming ``source`` and the term."""
        if not isinstance(glossary, dict):
            raise ValueError(f"{source}: a glossary maps terms to readings, got {type(glossary).__name__}")
        for term, value in glossary.items():
            ok = isinstance(value, str) or (isinstance(value, dict) and all(
                k in ("zh", "en") and isinstance(v, str) for k, v in value.items()))
            if not isinstance(term, str) or not term or not ok:
                raise ValueError(f"{source}: term {term!r} must map to a string or to {{zh: ..., en: ...}} "
                                 f"strings, got {value!r}")
        self.glossary.update(glossary)

    def load_glossary_yaml(self, path: str | Path) -> bool:
        """Replace the glossary with a YAML file's (upstream ``load_glossary_from_yaml``, used with
        ``<model_dir>/glossary.yaml``). False when the file does not exist."""
        import yaml

        path = Path(path)
        if not path.is_file():
            return False
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read glossary {path}: {e}") from None
        if data:
            self.glossary = {}
            self.load_glossary(data, source=str(path))
        return True

    def _apply_glossary(self, text: str, lang: str) -> str:
        for term in sorted(self.glossary, key=len, reverse=True):
            value = self.glossary[term]
            reading = value.get(lang, term) if isinstance(value, dict) else value
            # a function, not a template: a backslash in a reading is literal (upstream: re template)
            text = re.sub(re.escape(term), lambda _m, r=reading: r, text, flags=re.IGNORECASE)
        return text

    # ------------------------------------------------------------------------------ grammars

    @property
    def grammars(self) -> Grammars | None:
        if not self._loaded:
            self._grammars = load_grammars(self.backend)
            self._loaded = True
        return self._grammars

    def _run(self, fn, text: str) -> str | None:
        try:
            return fn(text)
        except Exception as e:  # noqa: BLE001 — the grammar failing degrades to the text as written
            log.warning("text normalizer failed on %r (%s: %s); using the text as written",
                        text[:40], type(e).__name__, e)
            return None

    # ------------------------------------------------------------------------------ normalize

    def normalize(self, text: str) -> str:
        g = self.grammars
        keys: list[tuple[str, str]] = []

        def hide(m: re.Match) -> str:
            keys.append((f"PRONPLACEHOLDER{_letters(len(keys))}PRONPLACEHOLDER", m.group(0)))
            return keys[-1][0]

        text = ANNOTATION.sub(hide, text)
        lang = "zh" if use_chinese(text) else "en"
        text = CONTRACTION.sub(r"\1 is", text)
        if self.glossary:
            text = self._apply_glossary(text, lang)
        if lang == "zh":
            work = text.rstrip()
            tech = TECH_TERM.findall(work)
            for term in sorted(dict.fromkeys(tech), key=len, reverse=True):
                work = work.replace(term, term.replace("-", "<H>"))
            work, tones = _protect_list(work, [m.group(0) for m in PINYIN_TONE.finditer(work)], "pinyin")
            work, names = _protect_list(work, NAME.findall(work), "n")
            out = self._run(g.zh, work) if g else work
            out = work if out is None else out
            out = _restore_list(out, names, "n")
            out = _restore_list(out, tones, "pinyin", respell_pinyin)
            out = re.sub(r"\s*<H>\s*", "-", out) if tech else out
            out = _ZH_REP.sub(lambda m: ZH_CHAR_REP_MAP[m.group()], out)
        else:
            tech = TECH_TERM.findall(text)
            work = text
            for term in sorted(dict.fromkeys(tech), key=len, reverse=True):
                work = work.replace(term, term.replace("-", "<H>"))
            out = self._run(g.en, work) if g else work
            if out is None:  # upstream: the text as written (after contractions and glossary)
                out = text
            else:
                out = re.sub(r"\s*<H>\s*", "-", out) if tech else out
            out = _REP.sub(lambda m: CHAR_REP_MAP[m.group()], out)
        for key, original in keys:
            out = out.replace(key, original)
        return out
