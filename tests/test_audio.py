"""Numpy audio front ends against independent implementations; bad prompts give clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from indextts_trt.runtime.audio import (
    AudioError,
    campplus_features,
    load_audio,
    load_emotion_prompt,
    load_prompt,
    log_fbank,
    mel_spectrogram,
    seamless_fbank,
    slaney_mel_basis,
    write_wav_int16,
)
from indextts_trt.runtime.demo_audio import synth_voice_prompt


@pytest.fixture(scope="module")
def speech16k():
    from indextts_trt.runtime.audio import sinc_resample

    return sinc_resample(synth_voice_prompt(2.3, 22050, seed=4), 22050, 16000)


def test_seamless_fbank_matches_transformers(speech16k):
    transformers = pytest.importorskip("transformers")
    fe = transformers.SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, padding_value=1, stride=2,
                                                  sampling_rate=16000)
    for x in (speech16k, speech16k[:16000 + 517]):  # even and odd frame counts
        ref = fe(x, sampling_rate=16000, return_tensors="np", return_attention_mask=True)
        feats, mask = seamless_fbank(x)
        assert feats.shape == ref["input_features"].shape[1:]
        np.testing.assert_allclose(feats, ref["input_features"][0], atol=1e-4, rtol=1e-4)
        np.testing.assert_array_equal(mask, ref["attention_mask"][0])


def test_kaldi_fbank_against_per_frame_reference(speech16k):
    """Straight from Kaldi's recipe, one frame at a time with explicit loops over filters."""
    x = speech16k[:4000].astype(np.float64)
    ours = log_fbank(x)
    n = 1 + (len(x) - 400) // 160
    assert ours.shape == (n, 80)
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(8000.0)
    delta = (hi - lo) / 81
    win = np.hanning(400) ** 0.85
    for i in (0, n // 2, n - 1):
        fr = x[i * 160:i * 160 + 400].copy()
        fr -= fr.mean()
        fr = np.concatenate([[fr[0] - 0.97 * fr[0]], fr[1:] - 0.97 * fr[:-1]]) * win
        p = np.abs(np.fft.rfft(fr, 512)) ** 2
        for b in (0, 40, 79):
            l, c, r = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
            e = 0.0
            for k in range(256):
                m = mel(k * 16000 / 512)
                w = (m - l) / (c - l) if l < m <= c else ((r - m) / (r - c) if c < m < r else 0.0)
                e += w * p[k]
            assert ours[i, b] == pytest.approx(np.log(max(e, 1.1920929e-07)), rel=1e-4, abs=1e-4)
    cf = campplus_features(x)
    np.testing.assert_allclose(cf.mean(0), 0, atol=1e-4)


def test_mel_basis_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=None)
    np.testing.assert_allclose(slaney_mel_basis(22050, 1024, 80, 0.0, None), ref, atol=1e-6)


@pytest.mark.parametrize("n", [22050, 22050 + 255, 5000])
def test_mel_spectrogram_matches_torch_stft(n):
    torch = pytest.importorskip("torch")
    y = synth_voice_prompt(1.2, 22050, seed=2)[:n]
    ours = mel_spectrogram(y)
    t = torch.nn.functional.pad(torch.from_numpy(y)[None, None], (384, 384), mode="reflect")[:, 0]
    s = torch.stft(t, 1024, 256, 1024, torch.hann_window(1024), center=False, return_complex=True)
    mag = torch.sqrt(s.real ** 2 + s.imag ** 2 + 1e-9)
    ref = torch.log(torch.clamp(torch.from_numpy(slaney_mel_basis()) @ mag, min=1e-5))[0].numpy()
    assert ours.shape == (80, n // 256) == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("sr, channels", [(8000, 1), (44100, 2), (48000, 1), (22050, 2)])
def test_prompts_at_odd_rates_and_stereo(tmp_path, sr, channels):
    x = synth_voice_prompt(1.5, sr, seed=1)
    data = np.stack([x, 0.5 * x], 1) if channels == 2 else x
    p = tmp_path / f"p{sr}.wav"
    sf.write(p, data, sr)
    pr = load_prompt(p)
    assert abs(len(pr.wav22k) - 1.5 * 22050) <= 2 and abs(len(pr.wav16k) - 1.5 * 16000) <= 2
    assert np.isfinite(pr.wav16k).all()
    assert abs(len(load_emotion_prompt(p)) - 1.5 * 16000) <= 2


def test_silent_clipped_long_and_short_prompts(tmp_path, caplog):
    sf.write(tmp_path / "silent.wav", np.zeros(22050), 22050)
    pr = load_prompt(tmp_path / "silent.wav")
    feats, _ = seamless_fbank(pr.wav16k)
    assert np.isfinite(feats).all() and np.isfinite(mel_spectrogram(pr.wav22k)).all()
    assert np.isfinite(campplus_features(pr.wav16k)).all()
    sf.write(tmp_path / "clipped.wav", np.clip(synth_voice_prompt(1.0) * 8, -1, 1), 22050)
    load_prompt(tmp_path / "clipped.wav")
    sf.write(tmp_path / "long.wav", synth_voice_prompt(17.0), 22050)
    with caplog.at_level("WARNING"):
        assert len(load_prompt(tmp_path / "long.wav").wav22k) == 15 * 22050
    assert "only the first 15 s" in caplog.text
    sf.write(tmp_path / "short.wav", np.zeros(5000), 22050)
    with pytest.raises(AudioError, match=r"short.wav is 0.23 s long; a prompt needs at least 0.5 s"):
        load_prompt(tmp_path / "short.wav")


def test_unreadable_inputs_name_the_path(tmp_path):
    with pytest.raises(AudioError, match="not found: .*nope.wav"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "text.wav").write_text("this is not audio")
    with pytest.raises(AudioError, match="cannot read .*text.wav"):
        load_audio(tmp_path / "text.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 22050)
    with pytest.raises(AudioError, match="empty.wav"):
        load_audio(tmp_path / "empty.wav")


def test_write_wav_round_trip_and_no_partial_file(tmp_path, monkeypatch):
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    p = write_wav_int16(tmp_path / "o.wav", x, 22050)
    back, sr = sf.read(p, dtype="int16")
    assert sr == 22050 and back[0] == -32767 and back[-1] == 32767
    import soundfile

    def boom(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(soundfile, "write", boom)
    with pytest.raises(OSError, match="No space"):
        write_wav_int16(tmp_path / "full.wav", x, 22050)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["o.wav"]


def test_audio_front_end_does_not_import_torch():
    code = "import sys, indextts_trt.runtime.audio, indextts_trt.runtime.text, indextts_trt.runtime.sampling; " \
           "assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
