"""The S2Mel / BigVGAN log-mel spectrogram (upstream s2mel/modules/audio.py), in numpy.

Reflect-pad (n_fft - hop)/2 each side, STFT with ``center=False`` and a periodic Hann window,
magnitude sqrt(re² + im² + 1e-9), librosa's Slaney mel basis, ln(clamp(x, 1e-5)).
T = floor(N / hop) frames.
"""

from __future__ import annotations

import functools

import numpy as np


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=4)
def slaney_mel_basis(sr: int = 22050, n_fft: int = 1024, n_mels: int = 80, fmin: float = 0.0,
                     fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft/2 + 1) as librosa.filters.mel(htk=False, norm='slaney')."""
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_pts = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper))
    w *= (2.0 / (mel_pts[2 : n_mels + 2] - mel_pts[:n_mels]))[:, None]
    return w.astype(np.float32)


def mel_frames(n_samples: int, hop: int = 256) -> int:
    """Frames of :func:`mel_spectrogram` for ``n_samples`` (reflect padding keeps floor(N / hop))."""
    return n_samples // hop


def mel_spectrogram(wav: np.ndarray, n_fft: int = 1024, hop: int = 256, win: int = 1024, n_mels: int = 80,
                    sr: int = 22050, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, floor(N / hop)) float32 log-mel."""
    x = np.asarray(wav, dtype=np.float32)
    pad = (n_fft - hop) // 2
    if len(x) <= pad:
        raise ValueError(f"audio of {len(x)} samples is too short for a {n_fft}-point mel spectrogram")
    x = np.pad(x, (pad, pad), mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)  # periodic Hann
    if win < n_fft:  # torch.stft centers a shorter window inside n_fft
        lpad = (n_fft - win) // 2
        window = np.pad(window, (lpad, n_fft - win - lpad))
    spec = np.fft.rfft(x[idx] * window, n=n_fft, axis=1)  # (T, n_fft/2+1)
    mag = np.sqrt(spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2 + 1e-9)
    mel = slaney_mel_basis(sr, n_fft, n_mels, fmin, fmax) @ mag.T
    return np.log(np.maximum(mel, 1e-5)).astype(np.float32)
