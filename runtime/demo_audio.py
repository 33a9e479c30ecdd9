"""A synthetic, voice-like speaker prompt for demos and tests (no audio ships with the project).

Harmonics of a slowly gliding pitch, shaped by three vowel formants and a syllable-rate envelope:
it exercises every front end like speech would (voiced energy, pauses, a pitch contour), which a
pure tone or white noise does not.
"""

from __future__ import annotations

import numpy as np

# (F1, F2, F3) in Hz for a few vowels; cycled per syllable
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def synth_voice_prompt(seconds: float = 3.0, sr: int = 22050, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    syll = 0.22  # seconds per syllable
    idx = np.minimum((t / syll).astype(int), 10_000)
    f0 = 140.0 + 25.0 * np.sin(2 * np.pi * 0.7 * t) + 4.0 * np.sin(2 * np.pi * 5.5 * t)  # Hz
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros(n)
    vowel = np.asarray(_VOWELS, dtype=np.float64)[idx % len(_VOWELS)]  # (n, 3)
    for h in range(1, 40):
        fh = h * f0
        amp = np.zeros(n)
        for k in range(3):  # formant resonances as Lorentzian bumps over harmonic frequency
            bw = 80.0 + 40.0 * k
            amp += 1.0 / (1.0 + ((fh - vowel[:, k]) / bw) ** 2) / (k + 1)
        amp *= (fh < sr / 2)
        out += amp * np.sin(h * phase) / h**0.5
    frac = (t % syll) / syll
    env = np.sin(np.pi * np.clip(frac / 0.85, 0, 1)) ** 0.6  # syllable envelope with short gaps
    env *= (rng.random(idx.max() + 1)[idx] > 0.12)  # occasional pauses
    out = out * env + 0.002 * rng.standard_normal(n)
    return (0.5 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)
