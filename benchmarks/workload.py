"""The fixed work every backend runs: texts, prompt, decoding settings and a fixed code count.

Random weights stop at random times, so each text is generated with ``min_new_tokens =
max_new_tokens = codes``: exactly the codes real weights would need for it (50 codes per second
of speech; ~3 English words or ~5 Chinese characters per second). The lengths are modest so the
full-size CPU report, which runs the PyTorch reference too, fits in 20 minutes on 2 cores.

A variant with another code rate (IndexTTS-2.5: 25 codes per second) generates the codes of the
same speech duration (:meth:`Workload.codes_for`), so two variants' reports compare like for like.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from indextts_trt.runtime.options import DEFAULTS
from indextts_trt.runtime.sampling import SamplingOptions

_S = SamplingOptions()
RATE = 50.0  # codes per second of speech that ``Text.codes`` counts (IndexTTS-2's)


@dataclass(frozen=True)
class Text:
    name: str
    language: str
    text: str
    codes: int  # semantic codes generated for it (one segment) at 50 codes per second of speech


FULL_TEXTS = (
    Text("en_short", "en", "Hello there.", 40),
    Text("en_medium", "en", "The weather is lovely today.", 80),
    Text("en_long", "en", "Streaming speech lets a listener hear the first words early.", 160),
    Text("zh_short", "zh", "你好世界。", 40),
    Text("zh_medium", "zh", "今天天气很好。", 80),
    Text("zh_long", "zh", "我们一起去公园散步，好吗？", 160),
)
# --quick: CI on tiny checkpoints; checks the report is produced and well formed, not timings
QUICK_TEXTS = (
    Text("en_short", "en", "The quick brown fox.", 12),
    Text("zh_short", "zh", "今天天气很好。", 16),
)


@dataclass(frozen=True)
class Workload:
    texts: tuple[Text, ...] = FULL_TEXTS
    prompt_seconds: float = 3.0  # the built-in synthetic prompt, seed 1
    prompt_seed: int = 1
    # upstream's decoding and S2Mel settings, read from the options dataclasses (written once there)
    num_beams: int = _S.num_beams
    top_k: int = _S.top_k
    top_p: float = _S.top_p
    temperature: float = _S.temperature
    repetition_penalty: float = _S.repetition_penalty
    diffusion_steps: int = DEFAULTS.diffusion_steps
    cfg_rate: float = DEFAULTS.cfg_rate
    seed: int = 0
    runs: int = 2
    warmup: int = 1
    threads: int = 0  # 0: all cores
    stream_chunk: tuple[int, int] = (100, 20)  # code-chunk streaming (chunk, overlap), as the peer
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["texts"] = [asdict(t) for t in self.texts]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Workload:
        d = dict(d)
        d["texts"] = tuple(Text(**t) for t in d["texts"])
        d["stream_chunk"] = tuple(d["stream_chunk"])
        return cls(**d)

    def sampling(self, codes: int) -> SamplingOptions:
        return SamplingOptions(num_beams=self.num_beams, top_k=self.top_k, top_p=self.top_p,
                               temperature=self.temperature, repetition_penalty=self.repetition_penalty,
                               max_new_tokens=codes, min_new_tokens=codes)

    @staticmethod
    def codes_for(text: Text, codes_per_second: float) -> int:
        """The text's codes at a variant's code rate: the same seconds of speech."""
        return max(1, round(text.codes * codes_per_second / RATE))

    def options(self, codes: int, seed: int, variant=None, language: str | None = None):
        """The run options; with a ``variant`` whose options have a ``language`` (IndexTTS-2.5),
        its options class with the text's language."""
        opts = DEFAULTS.replace(sampling=self.sampling(codes), diffusion_steps=self.diffusion_steps,
                                cfg_rate=self.cfg_rate, seed=seed)
        cls = getattr(variant, "options_class", None)
        if cls is not None and language is not None and "language" in {f.name for f in fields(cls)}:
            opts = cls(**{f.name: getattr(opts, f.name) for f in fields(opts)}, language=language)
        return opts


__all__ = ["Text", "Workload", "FULL_TEXTS", "QUICK_TEXTS"]
