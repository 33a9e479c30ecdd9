"""The IndexTTS-2.5 reference pipeline end to end on the tiny random checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from indextts_trt.runtime.indextts25.config import target_mel_length_v25
from indextts_trt.runtime.indextts25.options import RunOptions25
from indextts_trt.runtime.sampling import SamplingOptions
from indextts_trt.runtime.errors import OptionError


@pytest.fixture(scope="module")
def pipe25(ref_pipe_25):
    return ref_pipe_25


def test_synthesis_frame_grid_and_determinism(pipe25, prompt_wav):
    opts = RunOptions25(language="en", seed=4, max_text_tokens_per_segment=9, diffusion_steps=2,
                               duration_factor=1.3, sampling=SamplingOptions(max_new_tokens=6))
    a = pipe25.synthesize("Hello there. Yes!", prompt_wav, options=opts)
    b = pipe25.synthesize("Hello there. Yes!", prompt_wav, options=opts)
    assert len(a.segments) >= 2 and np.array_equal(a.wav, b.wav)
    for s in a.segments:
        n = len(s.codes)
        assert s.mel.shape[-1] == target_mel_length_v25(n, 1.3) == int(2 * n * 1.72 * 1.3)
        assert len(s.wav) == 256 * s.mel.shape[-1]
    assert a.sample_rate == 22050 and a.wav.dtype == np.int16


def test_language_changes_the_codes_and_bad_language_is_one_line(pipe25, prompt_wav):
    greedy = SamplingOptions.greedy(max_new_tokens=8)
    run = lambda lang: pipe25.synthesize("hola amigo", prompt_wav, options=RunOptions25(  # noqa: E731
        language=lang, seed=1, diffusion_steps=1, sampling=greedy, text_normalization=False)).segments[0].codes
    assert not np.array_equal(run("es"), run("ar"))  # lang_embedding row and the prefix token differ
    with pytest.raises(OptionError, match="language='xx': use one of zh, en, zhen, ja, es, ar"):
        run("xx")
