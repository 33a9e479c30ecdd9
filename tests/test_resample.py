"""The two prompt resamplers against independent references, and upstream's output lengths.

References: torchaudio's Resample is the windowed-sinc sum ``y[m] = Σ_i x[i]·h(i/orig − m/new)``,
evaluated here directly, one output sample at a time in float64 (no filter bank, padding or frame
bookkeeping); librosa (the dev extra) for the soxr path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from indextts_trt.runtime.audio import Prompt, load_emotion_prompt, load_prompt, sinc_resample, soxr_resample
from indextts_trt.runtime.audio.resample import sinc_kernel, sinc_length, soxr_length
from indextts_trt.runtime.demo_audio import synth_voice_prompt

RATES = [(22050, 16000), (16000, 22050), (44100, 16000), (48000, 22050), (24000, 16000), (8000, 22050)]


def closed_form(x: np.ndarray, sr_in: int, sr_out: int, m: np.ndarray, f32_phase: bool) -> np.ndarray:
    """y[m] = Σ_i x[i] · (b/orig) · sinc(t) · cos²(πt / 2L), t = b·(i/orig − m/new), |t| < L = 6,
    b = 0.99·min(orig, new). ``f32_phase``: torchaudio rounds the phase j/new (m = k·new + j) to
    float32 before adding it; with False the phase is exact."""
    g = math.gcd(sr_in, sr_out)
    orig, new = sr_in // g, sr_out // g
    b, L = 0.99 * min(orig, new), 6
    i = np.arange(len(x), dtype=np.float64)
    out = np.empty(len(m))
    for r, mm in enumerate(m):
        k, j = divmod(int(mm), new)
        phase = float(np.float32(j) / np.float32(new)) if f32_phase else j / new
        t = b * ((i - k * orig) / orig - phase)
        keep = np.abs(t) < L
        tt = t[keep]
        w = np.sinc(tt) * np.cos(np.pi * tt / (2 * L)) ** 2 * (b / orig)
        out[r] = np.dot(x[keep].astype(np.float64), w)
    return out


@pytest.mark.parametrize("sr_in, sr_out", RATES)
@pytest.mark.parametrize("n", [1, 7, 441, 1000, 2207])
def test_sinc_resample_is_the_windowed_sinc_sum(sr_in, sr_out, n):
    x = np.random.default_rng(n).uniform(-1, 1, n).astype(np.float32)
    y = sinc_resample(x, sr_in, sr_out)
    assert len(y) == math.ceil(n * sr_out / sr_in) and y.dtype == np.float32
    m = np.unique(np.r_[0, 1, len(y) // 2, len(y) - 2, len(y) - 1, np.arange(0, len(y), 97)].clip(0, len(y) - 1))
    # with torchaudio's float32 phase: equal but for the float32 kernel and output (~1e-7)
    ref = closed_form(x, sr_in, sr_out, m, f32_phase=True)
    np.testing.assert_allclose(y[m], ref, rtol=0, atol=2e-6)
    # the exact phase moves the weights by up to ~1e-5: the quirk is real, and reproduced
    exact = closed_form(x, sr_in, sr_out, m, f32_phase=False)
    np.testing.assert_allclose(y[m], exact, rtol=0, atol=1e-4)


def test_kernel_phase_rounding_is_reproduced():
    """Row j of the bank is the closed-form weight at float32(j/new): bit-exact after the float32 cast."""
    kernel, width = sinc_kernel(22050, 16000)
    assert kernel.shape == (320, 2 * width + 441) and width == 9 and kernel.dtype == np.float32
    j = 123
    t = 0.99 * 320 * ((np.arange(-width, width + 441) / 441) - float(np.float32(j) / np.float32(320)))
    t = np.clip(t, -6, 6)
    w = np.where(t == 0, 1.0, np.sin(np.pi * t) / np.where(t == 0, 1, np.pi * t))
    w = w * (np.cos(t * np.pi / 6 / 2) ** 2 * (0.99 * 320 / 441))
    assert np.abs(kernel[j] - w.astype(np.float32)).max() <= 6e-8


@pytest.mark.parametrize("sr_in, sr_out", RATES)
def test_output_length_rules(sr_in, sr_out):
    for n in (1, 2, 3, 440, 441, 442, 22049, 22050, 22051, 116188, 330749):
        assert sinc_length(n, sr_in, sr_out) == -(-n * sr_out // sr_in)
        assert soxr_length(n, sr_in, sr_out) == int(np.ceil(n * (sr_out / sr_in)))
    x = np.zeros(1001, np.float32)
    assert len(soxr_resample(x, sr_in, sr_out)) == soxr_length(1001, sr_in, sr_out)
    assert len(sinc_resample(x, sr_in, sr_out)) == sinc_length(1001, sr_in, sr_out)


def test_soxr_resample_is_librosa_resample():
    librosa = pytest.importorskip("librosa")
    x = synth_voice_prompt(1.3, 44100, seed=5)
    for n in (len(x), len(x) - 1, 4411, 4417):
        for sr_out in (22050, 16000):
            ref = librosa.resample(x[:n], orig_sr=44100, target_sr=sr_out, res_type="soxr_hq")
            got = soxr_resample(x[:n], 44100, sr_out)
            assert got.dtype == np.float32 and np.array_equal(got, ref)


def test_identity_rates_pass_through():
    x = np.arange(5, dtype=np.float32)
    assert np.array_equal(sinc_resample(x, 16000, 16000), x) and np.array_equal(soxr_resample(x, 22050, 22050), x)
    with pytest.raises(ValueError, match="mono"):
        sinc_resample(np.zeros((2, 5), np.float32), 22050, 16000)


def test_prompt_signals_have_upstreams_lengths(tmp_path):
    import soundfile as sf

    x = synth_voice_prompt(2.1, 44100, seed=7)[:88211]
    p = tmp_path / "p.wav"
    sf.write(p, np.stack([x, 0.25 * x], 1), 44100, subtype="FLOAT")
    pr = load_prompt(p)
    assert isinstance(pr, Prompt)
    mono = (x + np.float32(0.25) * x) / np.float32(2)
    assert len(pr.wav22k) == math.ceil(88211 / 2) == 44106
    assert len(pr.wav16k) == math.ceil(44106 * 320 / 441)
    assert len(pr.emo16k) == math.ceil(88211 * 16000 / 44100)
    np.testing.assert_array_equal(pr.wav16k, sinc_resample(pr.wav22k, 22050, 16000))
    np.testing.assert_allclose(pr.emo16k, soxr_resample(mono, 44100, 16000), atol=1e-6)
    np.testing.assert_array_equal(pr.emo16k, load_emotion_prompt(p))
    # the direct 16 kHz signal is not the two-step one: they differ (upstream uses both)
    n = min(len(pr.emo16k), len(pr.wav16k))
    assert not np.allclose(pr.emo16k[:n], pr.wav16k[:n], atol=1e-4)


def test_long_prompt_cut_on_every_signal(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "long.wav", synth_voice_prompt(16.0, 24000, seed=1), 24000)
    pr = load_prompt(tmp_path / "long.wav")
    assert len(pr.wav22k) == 15 * 22050 and len(pr.emo16k) == 15 * 16000
    assert len(pr.wav16k) == math.ceil(15 * 22050 * 320 / 441)
