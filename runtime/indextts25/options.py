"""IndexTTS-2.5's request options: IndexTTS-2's, plus the language, the duration factor and
text normalization on/off (upstream ``infer_v2_5.infer(lang, duration_factor, text_normalization)``).

One class, one rule per field, validated in :meth:`RunOptions25.validated` like every other option:
the Python API, ``tts-run`` (``--language``, ``--duration-factor``, ``--no-text-normalization``), the
PyTorch reference and a server all construct it, and a pipeline takes its variant's options class
through ``ModelVariant.request_options`` (so these fields on an IndexTTS-2 directory are an
OptionError naming the field, and a plain ``RunOptions`` on a 2.5 directory gets these defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionError
from ..numerics import is_number
from ..options import RunOptions
from ..text.multilingual import FRONTEND_LANGUAGES, check_language
from ..text.tokenizer import TextError

DEFAULT_LANGUAGE = "zh"  # upstream's CLI (--lang ZH) and web UI default; infer() has no default
# the web UI's slider (webui.py: minimum=0.5, maximum=2.0); upstream's infer() checks nothing. Above
# 1 a segment's code limit drops so its frames fit the stage ranges (config.max_codes_v25).
MIN_DURATION_FACTOR, MAX_DURATION_FACTOR = 0.5, 2.0


@dataclass(frozen=True)
class RunOptions25(RunOptions):
    language: str = DEFAULT_LANGUAGE  # a front-end mode (zh, en, zhen, ja, es, ar) or a code of the table
    duration_factor: float = 1.0  # mel frames = int(2N · 1.72 · factor): > 1 slower, < 1 faster
    text_normalization: bool = True  # numbers, symbols, ... spelled out (zh/en: WeTextProcessing, es: ours)

    def validated(self) -> RunOptions25:
        super().validated()
        try:
            check_language(self.language)
        except TextError:
            raise OptionError("language", self.language, f"use one of {', '.join(FRONTEND_LANGUAGES)} "
                              "(or a code of the IndexTTS-2.5 language table)") from None
        if not (is_number(self.duration_factor) and MIN_DURATION_FACTOR <= self.duration_factor <= MAX_DURATION_FACTOR):
            raise OptionError("duration_factor", self.duration_factor,
                              f"must be a number in [{MIN_DURATION_FACTOR:g}, {MAX_DURATION_FACTOR:g}] (upstream's "
                              "slider range)")
        if not isinstance(self.text_normalization, bool):
            raise OptionError("text_normalization", self.text_normalization, "must be True or False")
        if self.quick_streaming_tokens:
            # infer_v2_5 splits every segment by max_text_tokens_per_segment only
            raise OptionError("quick_streaming_tokens", self.quick_streaming_tokens,
                              "IndexTTS-2.5 has no short first segment (upstream's 2.5 ignores it): use 0")
        return self


DEFAULTS25 = RunOptions25()

__all__ = ["RunOptions25", "DEFAULTS25", "DEFAULT_LANGUAGE", "MIN_DURATION_FACTOR", "MAX_DURATION_FACTOR"]
