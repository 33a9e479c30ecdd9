"""IndexTTS-2.5 through the generic build and the torch-free runtime: the gated tiny build, codes
equal to the 2.5 PyTorch reference (greedy and seeded beam sampling), streaming, saved voices,
``tts-run --language`` without torch, and the duration factor's code limit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from indextts_trt.runtime.errors import OptionError
from indextts_trt.runtime.indextts25 import VARIANT
from indextts_trt.runtime.indextts25.config import max_codes_v25, max_segment_frames, target_mel_length_v25
from indextts_trt.runtime.indextts25.options import RunOptions25
from indextts_trt.runtime.options import RunOptions
from indextts_trt.runtime.sampling import SamplingOptions
from indextts_trt.runtime.streaming import ChunkPlan

TEXT = "Hello there. Yes."  # two segments of the tiny tokenizer at 12 tokens a segment


def _snr(ref, got):
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return 10 * np.log10((ref ** 2).sum() / max(((ref - got) ** 2).sum(), 1e-30))


def test_the_build_is_the_25_variant_and_gated(engine_dir_25, ort_pipe_25):
    m = json.loads((engine_dir_25 / "manifest.json").read_text())
    assert m["variant"] == "indextts-2.5" and ort_pipe_25.variant is VARIANT
    assert list(m["stages"]) == list(VARIANT.stage_specs(ort_pipe_25.cfg))
    assert {"semantic_codec", "vq2emb", "speaker_conditioning", "gpt_layer"}.isdisjoint(m["stages"])
    assert set(m["host_files"]) == {"config.yaml", "multilingual_zh_ja_yue_char_del.tiktoken", "host_data.safetensors"}
    for name in ("speaker_projection", "gpt_prefill", "gpt_decode", "codec_decode", "length_regulator"):
        par = m["stages"][name]["parity"]
        assert par["passed"] and {c["point"] for c in par["checks"]} == {"opt", "min", "awkward", "max"}, name
    # 2.5's prefill takes no mel inputs (no latent pass) and the language row
    assert [t["name"] for t in m["stages"]["gpt_prefill"]["inputs"]] == ["conds", "text_ids", "lang_id"]


@pytest.mark.parametrize("case", [
    dict(language="en", sampling=SamplingOptions.greedy(max_new_tokens=24)),
    dict(language="ja", sampling=SamplingOptions(max_new_tokens=24), duration_factor=1.3),  # 3 beams, seeded
], ids=["greedy-en", "beam-sampling-ja"])
def test_runtime_matches_the_25_reference(ort_pipe_25, ref_pipe_25, prompt_wav, case):
    text = TEXT if case["language"] == "en" else "今日は。はい。"  # ja: MeCab segmentation, no normalizer
    opts = RunOptions25(max_text_tokens_per_segment=12 if case["language"] == "en" else 16, diffusion_steps=3,
                        seed=11, **case)
    ref = ref_pipe_25.synthesize(text, prompt_wav, options=opts)
    got = ort_pipe_25.synthesize(text, prompt_wav, options=opts)
    assert len(ref.segments) == len(got.segments) >= 2
    for r, g in zip(ref.segments, got.segments):
        assert r.codes.tolist() == g.codes.tolist()  # the same codes, exactly
        assert g.mel.shape[-1] == target_mel_length_v25(len(g.codes), opts.duration_factor)
        np.testing.assert_allclose(g.mel, r.mel, atol=2e-3, rtol=1e-3)
        assert _snr(r.wav, g.wav) > 40.0
    assert len(ref.wav) == len(got.wav)


def test_a_plain_runoptions_gets_the_25_defaults_and_25_fields_are_refused_by_2(ort_pipe_25, prompt_wav):
    from indextts_trt.runtime.variant import get_variant

    kw = dict(sampling=SamplingOptions.greedy(max_new_tokens=12), diffusion_steps=1, seed=2)
    a = ort_pipe_25.synthesize("你好", prompt_wav, options=RunOptions(**kw))
    b = ort_pipe_25.synthesize("你好", prompt_wav, options=RunOptions25(language="zh", **kw))
    assert np.array_equal(a.wav, b.wav)  # zh: upstream's default language
    with pytest.raises(OptionError, match="language.*model variant indextts-2 has no such option.*indextts-2.5"):
        get_variant("indextts-2").request_options(RunOptions25(language="en"))
    with pytest.raises(OptionError, match="quick_streaming_tokens"):
        ort_pipe_25.synthesize("你好", prompt_wav, options=RunOptions(quick_streaming_tokens=4, **kw))


def test_streaming_per_segment_and_by_code_chunks(ort_pipe_25, prompt_wav):
    opts = RunOptions25(language="en", max_text_tokens_per_segment=12, diffusion_steps=2, seed=4,
                        sampling=SamplingOptions(max_new_tokens=30, min_new_tokens=30))
    whole = ort_pipe_25.synthesize(TEXT, prompt_wav, options=opts)
    chunks = list(ort_pipe_25.stream(TEXT, prompt_wav, options=opts))
    assert len(chunks) == 2 * len(whole.segments) - 1 and np.array_equal(np.concatenate(chunks), whole.wav)
    one = np.concatenate(list(ort_pipe_25.stream(TEXT, prompt_wav, options=opts, chunk=ChunkPlan(1000, 4))))
    assert np.array_equal(one, whole.wav)  # one window per segment: exactly the non-streamed audio
    assert max(len(s.codes) for s in whole.segments) > 16
    pieces = list(ort_pipe_25.stream(TEXT, prompt_wav, options=opts, chunk=ChunkPlan(8, 3)))
    got = np.concatenate(pieces)
    assert len(pieces) > 2 * len(whole.segments) and got.shape == whole.wav.shape  # windows tile the 2.5 grid
    # an approximation (the DiT and the codec see only their window): 48 dB measured here; without
    # overlap the window edges show (25 dB), so the bound has teeth
    assert _snr(whole.wav, got) > 30.0
    bare = np.concatenate(list(ort_pipe_25.stream(TEXT, prompt_wav, options=opts, chunk=ChunkPlan(8, 0))))
    assert bare.shape == whole.wav.shape and _snr(whole.wav, bare) < 30.0


def test_saved_voice_round_trip(ort_pipe_25, prompt_wav, tmp_path):
    opts = RunOptions25(language="en", sampling=SamplingOptions.greedy(max_new_tokens=15), diffusion_steps=2)
    ort_pipe_25.save_voice(tmp_path, "alice", prompt_wav)
    a = ort_pipe_25.synthesize("Hello.", prompt_wav, options=opts)
    b = ort_pipe_25.synthesize("Hello.", ort_pipe_25.load_voice(tmp_path, "alice"), options=opts)
    assert np.array_equal(a.wav, b.wav)
    meta = json.loads((tmp_path / "alice.json").read_text())
    # what 2.5's voice depends on: no codec pass on the prompt, so no semantic_codec graph
    assert list(meta["origin"]["precision"]) == ["semantic_encoder", "campplus", "length_regulator"]


def test_tts_run_language_is_torch_free(engine_dir_25, prompt_wav, tmp_path):
    out, rep = tmp_path / "o.wav", tmp_path / "r.json"
    code = (
        "import sys\n"
        "from indextts_trt.runtime.cli import main\n"
        f"sys.argv = ['tts-run', '--engine-dir', {str(engine_dir_25)!r}, '--speaker', {str(prompt_wav)!r},\n"
        f"            '--out', {str(out)!r}, '--report', {str(rep)!r}, '--diffusion-steps', '2', '--max-codes', '20',\n"
        "            '--greedy', '--language', 'en', '--duration-factor', '1.5', '--text', 'Hi there.']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('TORCH-FREE OK')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "TORCH-FREE OK" in r.stdout, r.stderr[-2000:]
    codes = json.loads(rep.read_text())["codes_per_segment"]
    import soundfile as sf

    assert sf.info(out).frames == 256 * sum(target_mel_length_v25(n, 1.5) for n in codes)


def test_cli_language_rules_are_usage_errors(tmp_path):
    from typer.testing import CliRunner

    from indextts_trt.runtime.cli import app

    for args, flag in ((["--language", "xx"], "--language"), (["--duration-factor", "3"], "--duration-factor")):
        r = CliRunner().invoke(app, ["--engine-dir", str(tmp_path), "--out", str(tmp_path / "o.wav"), *args])
        assert r.exit_code == 2 and flag in r.output and "Traceback" not in r.output, r.output


def test_a_slow_duration_factor_lowers_the_code_limit(ort_pipe_25, prompt_wav):
    cfg = ort_pipe_25.cfg
    frames = max_segment_frames(cfg)
    from indextts_trt.runtime.audio.limits import longest_prompt

    assert ort_pipe_25.specs["bigvgan"].dim_map["T_mel"].max == frames == 860
    assert ort_pipe_25.specs["dit_step"].dim_map["T"].max == longest_prompt(hop=cfg.hop_length).mel + frames
    for df in (0.5, 1.0, 1.3, 2.0):  # the largest N whose frames fit, by brute force
        want = max(n for n in range(1, cfg.gpt.max_mel_tokens + 1) if target_mel_length_v25(n, df) <= frames)
        assert max_codes_v25(cfg, 10**6, df) == want
    assert max_codes_v25(cfg, 7, 2.0) == 7
    opts = RunOptions25(language="en", duration_factor=2.0, diffusion_steps=1,
                        sampling=SamplingOptions.greedy(max_new_tokens=1000).replace(min_new_tokens=1000))
    seg = ort_pipe_25.synthesize("Hi.", prompt_wav, options=opts).segments[0]
    assert len(seg.codes) == max_codes_v25(cfg, 1000, 2.0) == 125 < cfg.gpt.max_mel_tokens
    assert seg.mel.shape[-1] <= frames
