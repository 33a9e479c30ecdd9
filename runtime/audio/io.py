"""Audio loading, prompt preparation and WAV writing (numpy + soundfile + soxr).

Every prompt signal has upstream's values and lengths (``infer_v2.py``, resampling in
``resample.py``): the speaker file is loaded as ``librosa.load`` does (mono mean, soxr HQ to
22.05 kHz, ceil length), cut at 15 s, then taken to 16 kHz with torchaudio's sinc-Hann
``Resample``; an emotion file, and the speaker file again when no emotion file is given, is loaded
straight at 16 kHz (``librosa.load(sr=16000)``) and cut at 15 s.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .resample import sinc_resample, soxr_resample

log = logging.getLogger(__name__)

SR_22K = 22050
SR_16K = 16000
MAX_PROMPT_SECONDS = 15.0
MIN_PROMPT_SECONDS = 0.5


class AudioError(UserError, ValueError):
    """An audio file is missing, unreadable, empty or unusable as a prompt."""


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any soundfile-readable file (WAV/FLAC/OGG/MP3...) → (float32 mono (N,), sample rate)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError for non-audio
        raise AudioError(f"cannot read {path} as audio: {e}") from None
    if data.size == 0:
        raise AudioError(f"{path} contains no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path} contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


@dataclass(frozen=True)
class Prompt:
    wav22k: np.ndarray  # float32 (N22,): librosa.load at 22.05 kHz, cut at 15 s (mel, S2Mel prompt)
    wav16k: np.ndarray  # float32 (N16,): wav22k through torchaudio's Resample (w2v-bert, CAMPPlus)
    # float32 (N16e,): the file loaded straight at 16 kHz, cut at 15 s: upstream's emotion input
    # when no emotion file is given (it loads the speaker file again for that; not wav16k)
    emo16k: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.wav22k) / SR_22K


def _cut(x: np.ndarray, sr: int, max_seconds: float, path: Path) -> np.ndarray:
    limit = int(max_seconds * sr)
    if len(x) > limit:
        log.warning("%s is %.1f s long; only the first %.0f s are used", path, len(x) / sr, max_seconds)
        return x[:limit]
    return x


def _check_length(x: np.ndarray, sr: int, path: Path) -> None:
    if len(x) < MIN_PROMPT_SECONDS * sr:
        raise AudioError(f"{path} is {len(x) / sr:.2f} s long; a prompt needs at least {MIN_PROMPT_SECONDS} s")


def load_prompt(path: str | Path, max_seconds: float = MAX_PROMPT_SECONDS) -> Prompt:
    """Speaker prompt: 22.05 kHz (cut at ``max_seconds``), the 16 kHz signal derived from it, and
    the file loaded straight at 16 kHz (the emotion input when no emotion file is given)."""
    x, sr = load_audio(path)
    x22 = _cut(soxr_resample(x, sr, SR_22K), SR_22K, max_seconds, Path(path))
    _check_length(x22, SR_22K, Path(path))
    return Prompt(wav22k=x22, wav16k=sinc_resample(x22, SR_22K, SR_16K), emo16k=_direct16k(x, sr, max_seconds, path))


def _direct16k(x: np.ndarray, sr: int, max_seconds: float, path: str | Path) -> np.ndarray:
    x16 = _cut(soxr_resample(x, sr, SR_16K), SR_16K, max_seconds, Path(path))
    _check_length(x16, SR_16K, Path(path))
    return x16


def load_emotion_prompt(path: str | Path, max_seconds: float = MAX_PROMPT_SECONDS) -> np.ndarray:
    """Emotion prompt: loaded straight at 16 kHz (upstream ``librosa.load(sr=16000)``), cut at 15 s."""
    x, sr = load_audio(path)
    return _direct16k(x, sr, max_seconds, path)


def write_wav_int16(path: str | Path, wav: np.ndarray, sr: int) -> Path:
    """Write 16-bit PCM atomically: a temp file beside ``path`` renamed on success, so a failure
    (full disk, Ctrl-C) never leaves a partial WAV. Float input is taken as [-1, 1]."""
    import soundfile as sf

    path = Path(path)
    wav = np.asarray(wav)
    if wav.dtype != np.int16:
        wav = to_int16(wav)
    from ..files import write_bytes_atomic

    # encoded in memory, then written atomically: libsndfile reports a full disk only as "System
    # error", a plain file write as ENOSPC (a WriteError naming the file)
    buf = io.BytesIO()
    sf.write(buf, wav, sr, subtype="PCM_16", format="WAV")
    return write_bytes_atomic(path, buf.getvalue())


INTERVAL_SILENCE_MS = 200


def to_int16(wav: np.ndarray) -> np.ndarray:
    """upstream: clamp(32767·wav, ±32767), written as 16-bit PCM."""
    return np.clip(np.round(np.asarray(wav, np.float32) * 32767.0), -32767, 32767).astype(np.int16)


def join_segments(wavs, interval_silence_ms: int = INTERVAL_SILENCE_MS, sr: int = SR_22K) -> np.ndarray:
    """Concatenate segment waveforms with ``interval_silence_ms`` of zeros between them (upstream)."""
    sil = np.zeros(int(sr * interval_silence_ms / 1000.0), np.int16)
    parts: list[np.ndarray] = []
    for i, w in enumerate(wavs):
        parts.append(to_int16(w))
        if i < len(wavs) - 1 and interval_silence_ms > 0:
            parts.append(sil)
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)
