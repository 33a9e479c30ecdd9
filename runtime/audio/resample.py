"""The two resamplers upstream uses, with upstream's values and output lengths (numpy + soxr).

Upstream IndexTTS2 (``infer_v2.py``) prepares a prompt in two steps:

1. ``librosa.load(path)`` / ``librosa.load(path, sr=16000)``: soxr at quality ``soxr_hq``, then
   ``librosa.util.fix_length`` to ``int(np.ceil(n * (target / orig)))`` samples (``fix=True``):
   soxr alone returns ``round(n · ratio)`` samples, one short for most lengths. :func:`soxr_resample`.
2. ``torchaudio.transforms.Resample(22050, 16000)``: a Hann-windowed sinc filter bank
   (``lowpass_filter_width=6``, ``rolloff=0.99``), computed in float64, stored as float32, applied
   as a strided convolution; ``ceil(n · new / orig)`` samples. :func:`sinc_resample`.

Both are written here from the published algorithms; no code of librosa's or torchaudio's is used.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

LOWPASS_FILTER_WIDTH = 6  # zero crossings of the sinc kept on each side
ROLLOFF = 0.99  # cutoff as a fraction of the lower Nyquist frequency


def soxr_length(n: int, sr_in: int, sr_out: int) -> int:
    """librosa's output length: float64 ``ceil(n · (sr_out / sr_in))``, as librosa computes it
    (so a float rounding just above an integer adds a sample there too)."""
    return int(np.ceil(n * (float(sr_out) / sr_in)))


def soxr_resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """``librosa.resample(x, orig_sr=sr_in, target_sr=sr_out, res_type="soxr_hq")``: soxr HQ, then
    zero-padded (or cut) to :func:`soxr_length` samples. float32 in, float32 out."""
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    import soxr

    y = soxr.resample(x, sr_in, sr_out, quality="HQ")
    n = soxr_length(len(x), sr_in, sr_out)
    if len(y) >= n:
        return np.ascontiguousarray(y[:n], dtype=np.float32)
    return np.concatenate([y, np.zeros(n - len(y), np.float32)])


def sinc_length(n: int, sr_in: int, sr_out: int) -> int:
    """torchaudio's output length: ``ceil(n · new / orig)`` (exact in integers)."""
    g = math.gcd(sr_in, sr_out)
    return -(-n * (sr_out // g) // (sr_in // g))


@lru_cache(maxsize=8)
def sinc_kernel(sr_in: int, sr_out: int) -> tuple[np.ndarray, int]:
    """The polyphase filter bank of ``torchaudio.transforms.Resample(sr_in, sr_out)`` (default
    ``dtype``): (new, 2·width + orig) float32 and ``width``, with orig/new the rates over their gcd.

    Row ``j`` holds the weights of output phase ``j`` for input offsets ``-width … width + orig - 1``
    (in input samples): ``w(t) = sinc(π t) · cos²(π t / 2L) · base / orig`` with
    ``t = base · (i / orig - j / new)`` clamped to ±L, ``base = min(orig, new) · rolloff``.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    g = math.gcd(sr_in, sr_out)
    orig, new = sr_in // g, sr_out // g
    L = LOWPASS_FILTER_WIDTH
    base = min(orig, new) * ROLLOFF
    width = math.ceil(L * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64) / orig  # (K,)
    # Upstream builds the phase offsets -j/new in float32 (torch's default dtype) before adding the
    # float64 grid: rounding them the same way keeps the kernel bit-identical.
    phase = (np.arange(0, -new, -1, dtype=np.float32) / np.float32(new)).astype(np.float64)  # (new,)
    t = (phase[:, None] + idx[None, :]) * base
    t = np.clip(t, -L, L)
    window = np.cos(t * math.pi / L / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.where(t == 0, 1.0, np.sin(t) / t)
    kernel = kernel * (window * (base / orig))
    return kernel.astype(np.float32), width


def sinc_resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """``torchaudio.transforms.Resample(sr_in, sr_out)(x)`` for a mono float32 signal.

    The input is zero-padded by ``width`` on the left and ``width + orig`` on the right; frame ``k``
    (input samples ``k·orig …``) gives outputs ``k·new … k·new + new - 1`` through the filter bank;
    the result is cut to :func:`sinc_length`. Products are summed in float64 (torch sums the same
    float32 products in float32: the two differ by float32 rounding, ~1e-7 relative)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"sinc_resample takes a mono (N,) signal, got shape {x.shape}")
    if sr_in == sr_out:
        return x
    kernel, width = sinc_kernel(sr_in, sr_out)
    new, k = kernel.shape
    g = math.gcd(sr_in, sr_out)
    orig = sr_in // g
    padded = np.concatenate([np.zeros(width), x.astype(np.float64), np.zeros(width + orig)])
    n_frames = (len(padded) - k) // orig + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, k)[::orig][:n_frames]  # (F, K) view
    y = (frames @ kernel.T.astype(np.float64)).reshape(-1)  # (F·new,)
    return y[: sinc_length(len(x), sr_in, sr_out)].astype(np.float32)
