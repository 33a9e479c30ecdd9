"""Audio front ends (torch-free): loading, resampling, Kaldi fbanks and the S2Mel mel spectrogram."""

from .features import campplus_features, kaldi_mel_banks, log_fbank, seamless_fbank
from .io import (
    INTERVAL_SILENCE_MS,
    SR_22K,
    AudioError,
    Prompt,
    join_segments,
    load_audio,
    load_emotion_prompt,
    load_prompt,
    to_int16,
    write_wav_int16,
)
from .mel import mel_spectrogram, slaney_mel_basis
from .resample import sinc_resample, soxr_resample

__all__ = ["AudioError", "Prompt", "load_audio", "load_prompt", "load_emotion_prompt", "sinc_resample", "soxr_resample",
           "write_wav_int16", "join_segments", "to_int16", "INTERVAL_SILENCE_MS", "SR_22K", "seamless_fbank", "campplus_features", "log_fbank", "kaldi_mel_banks",
           "mel_spectrogram", "slaney_mel_basis"]
