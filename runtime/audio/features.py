"""Kaldi-style log-mel filterbanks in numpy: the w2v-bert (SeamlessM4T) features and CAMPPlus'.

Both are Kaldi fbanks (25 ms povey frames, 10 ms hop, DC removal, pre-emphasis 0.97, 512-point
power spectrum, 80 triangular filters in Kaldi mel space from 20 Hz to Nyquist, natural log with a
float32-epsilon floor, ``snip_edges``). They differ in what is done around that:
- SeamlessM4T (w2v-bert): waveform ×2^15 first; per-bin mean/variance normalization over time
  (ddof 1, eps 1e-7); pad to an even frame count with 1.0; stack pairs of frames → (T/2, 160);
- CAMPPlus: no scaling (torchaudio.compliance.kaldi.fbank on the float waveform); mean over time
  subtracted.
"""

from __future__ import annotations

import functools

import numpy as np

FRAME, HOP, NFFT = 400, 160, 512
LOG_FLOOR = 1.192092955078125e-07  # float32 epsilon, Kaldi's energy floor


def kaldi_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=4)
def kaldi_mel_banks(num_bins: int = 80, sr: int = 16000, low: float = 20.0, high: float | None = None) -> np.ndarray:
    """(NFFT/2 + 1, num_bins) triangles computed in mel space (Kaldi's get_mel_banks)."""
    high = sr / 2 if high is None else high
    mel_lo, mel_hi = kaldi_mel(low), kaldi_mel(high)
    edges = np.linspace(mel_lo, mel_hi, num_bins + 2)
    fft_mel = kaldi_mel(np.arange(NFFT // 2 + 1) * sr / NFFT)[:, None]  # (257, 1)
    left, center, right = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    return np.maximum(0.0, np.minimum(up, down))


@functools.lru_cache(maxsize=2)
def povey_window(n: int = FRAME) -> np.ndarray:
    return np.power(np.hanning(n), 0.85)  # symmetric Hann^0.85


def fbank_frames(n_samples: int) -> int:
    """Kaldi frames of an ``n_samples`` signal (``snip_edges``: whole 400-sample frames only)."""
    return 1 + (n_samples - FRAME) // HOP if n_samples >= FRAME else 0


def w2v_frames(n_samples: int, stride: int = 2) -> int:
    """w2v-bert input frames: Kaldi frames padded to a multiple of ``stride``, then stacked."""
    return -(-fbank_frames(n_samples) // stride)


def log_fbank(wav: np.ndarray, num_bins: int = 80, sr: int = 16000, scale: float = 1.0) -> np.ndarray:
    """(T, num_bins) Kaldi log-mel energies, T = 1 + (N - 400) // 160 (snip_edges)."""
    x = np.asarray(wav, dtype=np.float64) * scale
    if len(x) < FRAME:
        raise ValueError(f"audio of {len(x)} samples is shorter than one {FRAME}-sample frame")
    n_frames = fbank_frames(len(x))
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = x[idx]  # (T, 400)
    frames = frames - frames.mean(axis=1, keepdims=True)  # remove DC offset
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
    frames = frames * povey_window(FRAME)
    power = np.abs(np.fft.rfft(frames, n=NFFT, axis=1)) ** 2  # (T, 257)
    mel = power @ kaldi_mel_banks(num_bins, sr)
    return np.log(np.maximum(mel, LOG_FLOOR)).astype(np.float32)


def seamless_fbank(wav16k: np.ndarray, padding_value: float = 1.0, stride: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """w2v-bert input features (T/2, 160) float32 and the (T/2,) int attention mask."""
    feats = log_fbank(wav16k, scale=2.0**15).astype(np.float64)
    feats = (feats - feats.mean(0, keepdims=True)) / np.sqrt(feats.var(0, ddof=1, keepdims=True) + 1e-7)
    t = feats.shape[0]
    mask = np.ones(t, dtype=np.int64)
    if t % stride:
        pad = stride - t % stride
        feats = np.concatenate([feats, np.full((pad, feats.shape[1]), padding_value)], axis=0)
        mask = np.concatenate([mask, np.zeros(pad, dtype=np.int64)])
    feats = feats.reshape(-1, feats.shape[1] * stride).astype(np.float32)
    mask = mask[stride - 1 :: stride]  # a stacked frame is valid if its last sub-frame is
    return feats, mask


def campplus_features(wav16k: np.ndarray) -> np.ndarray:
    """CAMPPlus input (T, 80): Kaldi fbank of the [-1, 1] waveform, mean over time subtracted."""
    f = log_fbank(wav16k, scale=1.0)
    return (f - f.mean(axis=0, keepdims=True)).astype(np.float32)
