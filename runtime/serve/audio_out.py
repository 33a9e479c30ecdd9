"""Response audio: 16-bit mono at the model's rate, as WAV, raw PCM, FLAC or MP3.

soundfile (libsndfile, already a dependency) writes WAV, FLAC and MP3; PCM is the samples as
little-endian int16, the rate in the ``X-Sample-Rate`` header. A streamed WAV starts with a header
whose sizes are 0xFFFFFFFF (the length is not known yet: players read to the end, as with
OpenAI's streamed WAV); then the samples follow as they are made.
"""

from __future__ import annotations

import io
import struct

import numpy as np

SUBTYPES = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}
UNKNOWN = 0xFFFFFFFF


def pcm_bytes(pcm: np.ndarray) -> bytes:
    return np.asarray(pcm, np.int16).astype("<i2", copy=False).tobytes()


def encode(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """The whole response body of ``fmt`` for int16 samples."""
    if fmt == "pcm":
        return pcm_bytes(pcm)
    import soundfile as sf

    container, subtype = SUBTYPES[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.asarray(pcm, np.int16), sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 44-byte PCM WAV header of unknown length (mono, 16-bit)."""
    return (b"RIFF" + struct.pack("<I", UNKNOWN) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16) + b"data" + struct.pack("<I", UNKNOWN))


__all__ = ["encode", "pcm_bytes", "wav_stream_header", "SUBTYPES"]
