"""The stage specs of IndexTTS-2, derived from the config (torch-free: the runtime sizes its
buffers from the same objects the exporter traces with). The dict's order is the stage order.

Ranges cover every input the front ends accept: the longest prompt (``audio.limits``: 15 s gives
749 w2v frames at 50 Hz, 1 498 Kaldi frames, 1 291 mel frames), text ≤ ``max_text_tokens`` (+2
bounds), up to ``max_mel_tokens`` codes (+2), the DiT over prompt + generated frames, beams ≤ 8.
"""

from __future__ import annotations

from ..audio.limits import PromptLimits, longest_prompt
from ..spec import CacheSpec, Dim, StageSpec, TensorSpec, Tolerance
from .config import IndexTTSConfig, target_mel_length

F32, I64 = "float32", "int64"

# fp32 tolerances: ONNX Runtime and PyTorch differ only in summation order
MAX_FP32 = {"fp32": Tolerance("max", atol=1e-4, rtol=1e-4), "fp16": Tolerance("max", atol=5e-2, rtol=5e-2),
            "bf16": Tolerance("max", atol=1e-1, rtol=1e-1)}
LOGITS = {"fp32": Tolerance("max", atol=2e-4, rtol=1e-4), "fp16": Tolerance("max", atol=1e-1, rtol=5e-2),
          "bf16": Tolerance("max", atol=2e-1, rtol=1e-1)}
VELOCITY = {"fp32": Tolerance("quantile", atol=1e-4, rtol=1e-4, quantile=0.999),
            "fp16": Tolerance("quantile", atol=5e-2, rtol=5e-2, quantile=0.99),
            "bf16": Tolerance("quantile", atol=1e-1, rtol=1e-1, quantile=0.99)}
WAVE = {"fp32": Tolerance("snr", snr_db=60.0), "fp16": Tolerance("snr", snr_db=30.0), "bf16": Tolerance("snr", snr_db=25.0)}
EXACT = {"fp32": Tolerance("exact"), "fp16": Tolerance("exact"), "bf16": Tolerance("exact")}

# int8 (export/int8_quant.py): weight MatMuls (and 1-D channel convolutions rewritten as MatMul)
# int8, their activations int8 at run time, everything else fp32. Its error is relative (a fraction
# of each activation's own range, compounding over layers), so the GPT and the encoders are judged
# by signal-to-noise ratio, which means the same on tiny random weights and at full size. A stage
# gets int8 only where its table has an entry for every output:
# - GPT logits, 25 dB: the error's RMS is at most 5.6 % of the logits' RMS. Measured at full size
#   (random weights, three points, 7-bit weights): decode 23.8 dB with per-tensor activations
#   (``dynamic``, fails; 26.4 dB with the earlier full-range weights), 24.0 per row (``rows``,
#   fails), 29.7 dB per block (``blocks``); prefill 20.6 / 23.8 dB (fail), 30.0 dB ``blocks``;
#   tiny 38-46 dB.
#   The codes are what matters downstream; the tests compare greedy codes with fp32's end to end.
# - hidden states and KV entries, 25 dB: what every later step attends to; their error reaches
#   the logits, which are judged themselves.
# - encoder features (w2v-bert, speaker latents, emotion vector), 25 dB: conditioning, judged as
#   features (tiny: 39-44 dB; full size: speaker 33.7, emotion 31.0 dB; w2v-bert 16.7-20.1 dB with
#   its pointwise convolutions int8, 27.5 dB with them fp32, which is what it keeps: README, int8).
# - the DiT step: the fp16 tolerance (q0.99 of the error ratio at atol = rtol = 5e-2): an int8 step
#   may be as far from fp32 as an fp16 step may. Measured at full size: 0.80 at the awkward point
#   (``dynamic``, its WaveNet convolutions int8 too), for 2.2× the fp32 step's speed at T 600 on an
#   Intel Xeon with AMX (1.6× on an AVX2 CPU without VNNI: README, Measured here).
INT8_SNR = Tolerance("snr", snr_db=25.0)
FEATURES_INT8 = {**MAX_FP32, "int8": INT8_SNR}
LOGITS_INT8 = {**LOGITS, "int8": INT8_SNR}
VELOCITY_INT8 = {**VELOCITY, "int8": VELOCITY["fp16"]}
# not quantized (no int8 entry): semantic_codec (exact VQ codes: a flipped code is a different
# token), campplus, vq2emb, length_regulator and BigVGAN (convolutions: ONNX Runtime's ConvInteger
# ran 2.2-3.6× slower than its fp32 Conv), gpt_layer (three small MatMuls per segment)

MAX_BEAMS = 8  # beams of one request
MAX_REQUESTS = 8  # requests that share one decode step or one DiT step (serving batches them)
MAX_DECODE_ROWS = 24  # rows of one decode step: requests × beams


def _dim(name: str, lo: int, opt: int, hi: int) -> Dim:
    """A range whose typical value is clamped into it (tiny configs have small maxima)."""
    return Dim(name, lo, min(max(opt, lo), hi), hi)


# --- builders of the stages other variants share (IndexTTS-2.5 builds these with its own sizes) ---


def semantic_encoder_spec(cfg, t50: Dim) -> StageSpec:
    return StageSpec(
        "semantic_encoder", "w2v-bert-2.0 feature projection + first layers + stats normalization",
        inputs=(TensorSpec("input_features", F32, (1, "T50", 160)),
                TensorSpec("attention_mask", I64, (1, "T50"), 1, 2)),
        outputs=(TensorSpec("semantic_features", F32, (1, "T50", cfg.semantic_dim)),),
        dims=(t50,), tolerances={"semantic_features": FEATURES_INT8})


def campplus_spec(cfg, prompt: PromptLimits) -> StageSpec:
    return StageSpec(
        "campplus", "CAM++ speaker model on the mean-normalized Kaldi fbank",
        inputs=(TensorSpec("fbank", F32, (1, "T_fbank", 80)),),
        outputs=(TensorSpec("style", F32, (1, cfg.style_dim)),),
        dims=(_dim("T_fbank", 48, 500, prompt.fbank),), tolerances={"style": MAX_FP32})


def emotion_conditioning_spec(cfg, t50: Dim) -> StageSpec:
    return StageSpec(
        "emotion_conditioning", "emotion conformer + perceiver + emovec layers → emotion vector",
        inputs=(TensorSpec("semantic_features", F32, (1, "T50", cfg.semantic_dim)),),
        outputs=(TensorSpec("emovec", F32, (1, cfg.gpt.model_dim)),),
        dims=(t50,), tolerances={"emovec": FEATURES_INT8})


def cache_part_names(layers: int) -> tuple[str, ...]:
    """The decode step's cache inputs, one per (layer, key/value) in the cache's order."""
    return tuple(f"{half}.{i}" for i in range(layers) for half in ("key", "value"))


def cache_parts(layers: int, heads: int, hd: int) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(n, F32, ("B", heads, "CAP", hd), reduced=True) for n in cache_part_names(layers))


def gpt_decode_spec(cfg, conds: int, max_text: int, max_codes: int) -> StageSpec:
    """``conds``: the conditioning rows before the text; ``max_text``/``max_codes``: text and mel
    positions with their bounds."""
    g = cfg.gpt
    heads, hd, layers = g.heads, g.model_dim // g.heads, g.layers
    return StageSpec(
        "gpt_decode", "one GPT decode step over B rows (beams, of one or several requests), each attending "
        "to its own cache_len valid positions of a runtime-owned cache; returns the rows' new keys/values",
        inputs=(TensorSpec("mel_ids", I64, ("B", 1), 0, g.number_mel_codes),
                TensorSpec("mel_pos", I64, ("B", 1), 0, max_codes),
                TensorSpec("cache_len", I64, ("B",), conds + 3, conds + 4),
                *cache_parts(layers, heads, hd)),
        outputs=(TensorSpec("logits", F32, ("B", g.number_mel_codes)),
                 TensorSpec("kv_new", F32, (layers, 2, "B", heads, 1, hd), reduced=True)),
        dims=(_dim("B", 1, 3, MAX_DECODE_ROWS),
              _dim("CAP", conds + 8, conds + 400, conds + max_text + max_codes + 1)),
        tolerances={"logits": LOGITS_INT8, "kv_new": FEATURES_INT8}, cache=CacheSpec(cache_part_names(layers), "kv_new", "cache_len", axis=2))


def length_regulator_spec(cfg, t_in_max: int, t_out_max: int) -> StageSpec:
    return StageSpec(
        "length_regulator", "length regulator; the nearest-interpolation source index is an input",
        inputs=(TensorSpec("content", F32, (1, "T_in", cfg.semantic_dim)), TensorSpec("src_index", I64, ("T_out",), 0, -1)),
        outputs=(TensorSpec("cond", F32, (1, "T_out", cfg.s2mel.length_regulator.channels)),),
        dims=(_dim("T_in", 1, 200, t_in_max), _dim("T_out", 1, 344, t_out_max)),
        tolerances={"cond": MAX_FP32})


def dit_step_spec(cfg, t_max: int) -> StageSpec:
    n_mels, style, lr_ch = cfg.n_mels, cfg.style_dim, cfg.s2mel.length_regulator.channels
    return StageSpec(
        "dit_step", "one flow-matching Euler step of B requests: the DiT on the CFG batch [x; x] (the "
        "uncond half without prompt, style and condition), the guided velocity, x + dt·v with each row's "
        "prompt frames zeroed",
        inputs=(TensorSpec("x", F32, ("B", n_mels, "T")), TensorSpec("prompt_x", F32, ("B", n_mels, "T")),
                TensorSpec("x_lens", I64, ("B",), -1, -1), TensorSpec("prompt_len", I64, ("B",), -1, -1),
                TensorSpec("t", F32, ("B",)), TensorSpec("dt", F32, ("B",)),
                TensorSpec("style", F32, ("B", style)), TensorSpec("cond", F32, ("B", "T", lr_ch)),
                TensorSpec("cfg_rate", F32, (1,))),
        outputs=(TensorSpec("x_next", F32, ("B", n_mels, "T")), TensorSpec("velocity", F32, ("B", n_mels, "T"))),
        dims=(_dim("B", 1, 1, MAX_REQUESTS), _dim("T", 8, 600, t_max)),
        tolerances={"x_next": VELOCITY_INT8, "velocity": VELOCITY_INT8})


def bigvgan_spec(cfg, frames_max: int) -> StageSpec:
    hop = cfg.hop_length
    return StageSpec(
        "bigvgan", "BigVGAN v2 vocoder: mel → 22.05 kHz waveform",
        inputs=(TensorSpec("mel", F32, (1, cfg.n_mels, "T_mel")),),
        outputs=(TensorSpec("wav", F32, (1, 1, "T_wav")),),
        dims=(_dim("T_mel", 1, 200, frames_max), _dim("T_wav", hop, 200 * hop, frames_max * hop)),
        derived={"T_wav": f"{hop} * T_mel"},
        tolerances={"wav": WAVE})


def prompt_dim(prompt: PromptLimits) -> Dim:
    """T50: w2v-bert frames of any accepted prompt."""
    return _dim("T50", 4, 250, prompt.w2v)


def stage_specs(cfg: IndexTTSConfig) -> dict[str, StageSpec]:
    g = cfg.gpt
    d, ds = g.model_dim, cfg.semantic_dim
    heads, hd, layers = g.heads, g.model_dim // g.heads, g.layers
    n_codes = cfg.semantic_codec.codebook_size
    conds = g.condition_num_latent + 2
    max_codes = g.max_mel_tokens + 2  # [start, c1..cN, stop]
    max_text = g.max_text_tokens + 2
    prompt = longest_prompt(hop=cfg.hop_length)
    gen_frames = target_mel_length(g.max_mel_tokens)  # the most mel frames one segment generates
    t50 = prompt_dim(prompt)
    specs = [
        semantic_encoder_spec(cfg, t50),
        StageSpec(
            "semantic_codec", "semantic codec encoder + factorized VQ: codes and quantized embedding",
            inputs=(TensorSpec("semantic_features", F32, (1, "T50", ds)),),
            outputs=(TensorSpec("codes", I64, (1, "T50")), TensorSpec("quantized", F32, (1, "T50", ds))),
            dims=(t50,), tolerances={"codes": EXACT, "quantized": MAX_FP32}),
        StageSpec(
            "vq2emb", "semantic codebook rows → out_project embedding",
            inputs=(TensorSpec("codes", I64, (1, "N"), 0, n_codes),),
            outputs=(TensorSpec("embedding", F32, (1, "N", ds)),),
            dims=(_dim("N", 1, 200, max_codes),), tolerances={"embedding": MAX_FP32}),
        campplus_spec(cfg, prompt),
        StageSpec(
            "speaker_conditioning", "speaker conformer + perceiver → conditioning latents",
            inputs=(TensorSpec("semantic_features", F32, (1, "T50", ds)),),
            outputs=(TensorSpec("latents", F32, (1, g.condition_num_latent, d)),),
            dims=(t50,), tolerances={"latents": FEATURES_INT8}),
        emotion_conditioning_spec(cfg, t50),
        StageSpec(
            "gpt_prefill", "GPT over [conditioning ; text ; mel codes]: the generation prefill and the "
            "teacher-forced latent pass in one graph; outputs final_norm'd hidden states, last-position "
            "logits and the KV cache",
            # batch 1: the beams share the prompt, so the runtime copies one prefilled cache into
            # every beam row (as HF expands its input) instead of prefilling B identical rows
            inputs=(TensorSpec("conds", F32, (1, conds, d)), TensorSpec("text_ids", I64, (1, "L_text"), 0, g.number_text_tokens),
                    TensorSpec("mel_ids", I64, (1, "M"), 0, g.number_mel_codes),
                    TensorSpec("mel_pos", I64, (1, "M"), 0, max_codes)),
            outputs=(TensorSpec("hidden", F32, (1, "S", d)), TensorSpec("logits", F32, (1, g.number_mel_codes)),
                     TensorSpec("kv", F32, (layers, 2, 1, heads, "S", hd), reduced=True)),
            dims=(_dim("L_text", 3, 40, max_text), _dim("M", 1, 1, max_codes),
                  _dim("S", conds + 4, conds + 41, conds + max_text + max_codes)),
            derived={"S": f"{conds} + L_text + M"},
            tolerances={"hidden": FEATURES_INT8, "logits": LOGITS_INT8, "kv": FEATURES_INT8}),
        gpt_decode_spec(cfg, conds, max_text, max_codes),
        StageSpec(
            "gpt_layer", "S2Mel gpt_layer: GPT latents → semantic embedding space",
            inputs=(TensorSpec("latent", F32, (1, "N", d)),),
            outputs=(TensorSpec("projected", F32, (1, "N", ds)),),
            dims=(_dim("N", 1, 200, max_codes),), tolerances={"projected": MAX_FP32}),
        # T_in: the prompt's semantic frames (speaker conditioning) or a segment's codes
        length_regulator_spec(cfg, max(max_codes, prompt.w2v), max(prompt.mel, gen_frames)),
        dit_step_spec(cfg, prompt.mel + gen_frames),
        bigvgan_spec(cfg, gen_frames),
    ]
    return {s.name: s for s in specs}
