"""Japanese word segmentation (and optional kanji → hiragana) as IndexTTS-2.5's front end does it.

Upstream (``indextts/utils/ja_g2p.py``) runs MeCab through ``fugashi`` with the ``unidic-lite``
dictionary. infer_v2_5 builds it with ``g2p_ratio=0``, so at inference it replaces nothing: the
Japanese text is only *segmented*, words joined by single spaces inside each space-free run
(runs of spaces in the input are kept as they are). The segmentation is the dictionary's, so we
use the same library and dictionary (there is no equivalent without MeCab + UniDic; a different
analyser, e.g. janome/IPADIC or Sudachi, cuts words differently and changes the token ids).

Quirk kept: for every run that contains a kanji token, upstream draws one ``random.random()``
even when the ratio is 0 (it consumes the caller's RNG state); ``rng`` defaults to Python's
global ``random`` module to match.
"""

from __future__ import annotations

import random as _random
import re
from collections.abc import Callable

from .tokenizer import TextError

Tagger = Callable[[str], list[tuple[str, str]]]  # text → [(surface, katakana reading)]


def fugashi_tagger() -> Tagger:
    """MeCab via fugashi (``pip install fugashi unidic-lite``, the ``ja`` extra)."""
    try:
        import fugashi
    except ImportError:
        raise TextError("Japanese (lang ja) needs MeCab: pip install 'fugashi>=1.3' 'unidic-lite>=1.0.8' "
                        "(the ja extra)") from None
    try:
        tagger = fugashi.Tagger()
    except RuntimeError as e:  # fugashi found no dictionary
        raise TextError(f"Japanese (lang ja): MeCab has no dictionary ({e}); pip install unidic-lite") from None

    def tag(text: str) -> list[tuple[str, str]]:
        out = []
        for word in tagger(text):
            reading = getattr(word.feature, "kana", None)
            out.append((word.surface, reading if reading and reading != "*" else word.surface))
        return out

    return tag


def kata_to_hira(text: str) -> str:
    """ァ..ヶ → ぁ..ゖ (code point − 0x60); everything else unchanged."""
    return "".join(chr(ord(c) - 0x60) if 0x30A1 <= ord(c) <= 0x30F6 else c for c in text)


def _has_kanji(s: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in s)


class JapaneseSegmenter:
    def __init__(self, g2p_ratio: float = 0.0, tagger: Tagger | None = None, rng=None):
        self.g2p_ratio = g2p_ratio
        self._tagger = tagger
        self.rng = _random if rng is None else rng

    @property
    def tagger(self) -> Tagger:
        if self._tagger is None:  # loaded on first Japanese text: the dictionary is 250 MB on disk
            self._tagger = fugashi_tagger()
        return self._tagger

    def _run(self, text: str) -> str:
        tokens = self.tagger(text)
        kanji = [i for i, (surface, _) in enumerate(tokens) if _has_kanji(surface)]
        n = int(len(kanji) * self.g2p_ratio)
        # upstream evaluates `n == 0 and kanji and random.random() < ratio`, in that order
        if n == 0 and kanji and self.rng.random() < self.g2p_ratio:
            n = 1
        chosen = set(self.rng.sample(kanji, min(n, len(kanji)))) if n else set()
        return " ".join(kata_to_hira(r) if i in chosen else s for i, (s, r) in enumerate(tokens))

    def process(self, text: str) -> str:
        """Segment every space-free run; the space runs between them are kept verbatim."""
        return "".join(self._run(p) if p.strip() else p for p in re.split(r"( +)", text))


__all__ = ["JapaneseSegmenter", "fugashi_tagger", "kata_to_hira"]
