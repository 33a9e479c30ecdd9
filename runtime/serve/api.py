"""The request body of ``POST /v1/audio/speech``: OpenAI's fields plus ours, checked once.

OpenAI's fields: ``model``, ``input``, ``voice`` (a saved voice, or ``default``: the built-in
synthetic prompt), ``response_format`` (wav, pcm, flac, mp3), ``speed`` (1.0 only: IndexTTS-2 has
no speed control, upstream always conditions on speed 0), ``stream_format`` ("audio" streams).
Ours: ``stream``, ``stream_chunk_codes``/``stream_overlap_codes`` (code-chunk streaming),
``emotion_audio`` (base64), ``emotion_vector``, ``emotion_alpha``, ``seed``, ``greedy``,
``num_beams``, ``top_k``, ``top_p``, ``temperature``, ``repetition_penalty``, ``max_codes``,
``min_codes``, ``max_segment_tokens``, ``diffusion_steps``, ``cfg_rate``, ``interval_silence_ms``.

Every value rule is the runtime's own (``RunOptions``, ``SamplingOptions``, ``ChunkPlan``,
``check_voice_name``): a broken one is an :class:`~..errors.OptionError` whose field this module
renames to the API's spelling (:data:`FIELDS`), so the 400 names what the client sent.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ..errors import OptionError, UsageError, show
from ..options import RunOptions
from ..sampling import SamplingOptions
from ..streaming import ChunkPlan
from ..voices import check_voice_name

FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg"}
STREAM_FORMATS = ("wav", "pcm")  # a header-less or open-ended container; flac/mp3 are written whole
DEFAULT_VOICE = "default"
# dataclass field -> the request field that sets it
FIELDS = {"emo_alpha": "emotion_alpha", "max_new_tokens": "max_codes", "min_new_tokens": "min_codes",
          "max_text_tokens_per_segment": "max_segment_tokens", "chunk_codes": "stream_chunk_codes",
          "overlap_codes": "stream_overlap_codes", "name": "voice"}
SAMPLING = ("num_beams", "top_k", "top_p", "temperature")
KNOWN = {"model", "input", "voice", "response_format", "speed", "stream", "stream_format", "stream_chunk_codes",
         "stream_overlap_codes", "emotion_audio", "emotion_vector", "emotion_alpha", "seed", "greedy",
         "repetition_penalty", "max_codes", "min_codes", "max_segment_tokens", "diffusion_steps", "cfg_rate",
         "interval_silence_ms", *SAMPLING}


@dataclass(frozen=True)
class Limits:
    max_input_chars: int = 4096  # OpenAI's own limit for `input`
    max_upload_bytes: int = 16 << 20  # an uploaded prompt (a 15 s prompt is ≤ 5.3 MB as 48 kHz stereo WAV)


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str
    response_format: str
    stream: bool
    options: RunOptions
    chunk: ChunkPlan | None
    emotion_audio: bytes | None


def api_error(e: OptionError) -> OptionError:
    """The same error with the field spelled as the API spells it."""
    field = FIELDS.get(e.field, e.field)
    return e if field == e.field else OptionError(field, e.value, e.rule)


def parse_speech(body, models: tuple[str, ...], limits: Limits = Limits()) -> SpeechRequest:
    """The request, or an ``OptionError``/``UsageError`` naming the field and its rule."""
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    unknown = sorted(set(body) - KNOWN)
    if "instructions" in unknown:
        raise OptionError("instructions", body["instructions"], "not supported: emotion from text needs the Qwen "
                          "emotion model; give emotion_audio or emotion_vector")
    if unknown:
        raise UsageError(f"unknown field(s) {', '.join(unknown)}")
    try:
        return _parse(body, models, limits)
    except OptionError as e:
        raise api_error(e) from None


def _parse(body: dict, models: tuple[str, ...], limits: Limits) -> SpeechRequest:
    def need(ok: bool, field: str, rule: str):
        if not ok:
            raise OptionError(field, body.get(field), rule)

    need(body.get("model") in models, "model", f"this server serves {', '.join(models)}")
    text = body.get("input")
    need(isinstance(text, str) and text.strip() != "", "input", "must be a non-empty string")
    need(len(text) <= limits.max_input_chars, "input",
         f"{len(text)} characters is over the limit of {limits.max_input_chars} (--max-input-chars)")
    voice = body.get("voice", DEFAULT_VOICE)
    if voice != DEFAULT_VOICE:
        check_voice_name(voice, "voice")
    fmt = body.get("response_format", "wav")
    need(fmt in FORMATS, "response_format", f"use {', '.join(FORMATS)}")
    speed = body.get("speed", 1.0)
    need(isinstance(speed, (int, float)) and not isinstance(speed, bool) and speed == 1.0, "speed",
         "IndexTTS-2 has no speed control (upstream always conditions on speed 0): only 1.0")
    sf = body.get("stream_format")
    need(sf in (None, "audio"), "stream_format", "only 'audio' (server-sent events are not supported)")
    stream = body.get("stream", sf == "audio")
    need(isinstance(stream, bool), "stream", "must be true or false")
    chunk_codes, overlap = body.get("stream_chunk_codes"), body.get("stream_overlap_codes")
    need(overlap is None or chunk_codes is not None, "stream_overlap_codes", "needs stream_chunk_codes")
    chunk = None
    if chunk_codes is not None:
        stream = True  # as tts-run's --stream-chunk: a chunk plan streams
        chunk = ChunkPlan(chunk_codes) if overlap is None else ChunkPlan(chunk_codes, overlap)
    need(not stream or fmt in STREAM_FORMATS, "response_format",
         f"{fmt} cannot be streamed: stream {' or '.join(STREAM_FORMATS)}")
    return SpeechRequest(text, voice, fmt, stream, _options(body), chunk, _emotion_audio(body, limits))


def _options(body: dict) -> RunOptions:
    given = {k: body[k] for k in SAMPLING if k in body}
    rep = body.get("repetition_penalty", SamplingOptions.repetition_penalty)
    max_codes = body.get("max_codes", SamplingOptions.max_new_tokens)
    if body.get("greedy", False) is True:
        if given:
            raise UsageError(f"greedy cannot be combined with {', '.join(given)}: greedy decoding fixes them")
        sampling = SamplingOptions.greedy(max_new_tokens=max_codes, repetition_penalty=rep)
    elif body.get("greedy", False) is not False:
        raise OptionError("greedy", body["greedy"], "must be true or false")
    else:
        sampling = SamplingOptions(**given, repetition_penalty=rep, max_new_tokens=max_codes)
    sampling = sampling.replace(min_new_tokens=body.get("min_codes", 0))
    fields = {"emotion_vector": "emotion_vector", "emotion_alpha": "emo_alpha", "seed": "seed",
              "max_segment_tokens": "max_text_tokens_per_segment", "diffusion_steps": "diffusion_steps",
              "cfg_rate": "cfg_rate", "interval_silence_ms": "interval_silence_ms"}
    kw = {dst: body[src] for src, dst in fields.items() if src in body}
    return RunOptions(sampling=sampling, **kw).validated()


def _emotion_audio(body: dict, limits: Limits) -> bytes | None:
    data = body.get("emotion_audio")
    if data is None:
        return None
    if not isinstance(data, str):
        raise OptionError("emotion_audio", "…", "must be a base64 string of an audio file")
    if len(data) * 3 // 4 > limits.max_upload_bytes:
        raise OptionError("emotion_audio", f"{len(data) * 3 // 4} bytes",
                          f"is over the upload limit of {limits.max_upload_bytes} bytes (--max-upload-mb)")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise OptionError("emotion_audio", show(data, 20), "must be a base64 string of an audio file") from None


__all__ = ["FORMATS", "STREAM_FORMATS", "DEFAULT_VOICE", "Limits", "SpeechRequest", "parse_speech", "api_error"]
