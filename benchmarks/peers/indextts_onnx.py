"""The ``indextts-onnx`` 0.3.0 port on the benchmark's fixed work: one process, JSON in, JSON out.

Run by ``tts-export bench --peer indextts-onnx`` with the port's own interpreter
(``PEER_PYTHON benchmarks/peers/indextts_onnx.py ARGS.json OUT.json``), so this file imports only
the port, numpy and the standard library: nothing of indextts_trt, which that environment lacks.
The output has the shape of our worker's (``benchmarks/worker.py``), so ``report.summarize`` reads it
as one more backend.

The port reads its own ONNX folder (``indextts-export``'s output: ten graphs, int8 except the
semantic codec, DiT and BigVGAN, plus ``bpe.model``), not the checkpoint directory. Its stages are
the private methods ``IndexTTSInfer.infer`` calls one after the other; timing them here instead of
calling ``infer`` maps them onto our report's stages:

  text          ``tokenizer.encode`` + ``split_segments`` (the port normalizes no text)
  conditioning  ``_prepare_reference`` (w2v-bert, semantic codec, s2mel_ref, mel, fbank, CAMPPlus;
                cached per prompt path, as our pipeline caches a prompt's conditioning)
  gpt_generate  ``_gpt2_generate`` less its ``gpt2_forward`` call (the GPT's conditioning encoders
                run inside ``gpt2_init``, i.e. here)
  gpt_latents   the ``gpt2_forward`` session (conditioning encoders again, then the latent pass)
  s2mel         ``_s2mel_inference`` (s2mel_gen, then the CFM loop of ``dit_step`` calls)
  bigvgan       ``_run_bigvgan``

Forced code count, as our workers do: the port samples with ``sampling.top_k_top_p_sample``, looked
up in ``indextts_onnx.infer``'s namespace at each call; wrapped here so the stop code can never be
drawn, with ``max_mel_tokens`` = the text's codes, generation ends at exactly that count.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

PORT, VERSION = "indextts-onnx", "0.3.0"  # the private methods timed here are 0.3.0's
STOP_CODE = 8193  # the port's STOP_MEL_TOKEN (upstream's stop_mel_token)
# the files IndexTTSInfer opens (an int8 twin ``NAME_int8.onnx`` is taken when present)
GRAPHS = ("wav2vec2bert", "semantic_codec", "campplus", "gpt2_init", "gpt2_step", "gpt2_forward",
          "s2mel_ref", "s2mel_gen", "dit_step", "bigvgan")
FP32_ONLY = ("dit_step", "bigvgan")  # IndexTTSInfer loads these fp32 even when an int8 twin exists
STAGES = ("text", "conditioning", "gpt_generate", "gpt_latents", "s2mel", "bigvgan")
# our finer timers (report.summarize's unit figures) ← the port's sessions
SESSIONS = {"gpt2_init": "gpt_prefill", "gpt2_step": "gpt_decode_step", "dit_step": "dit_step"}


def missing_files(model_dir: Path) -> list[str]:
    """The files of the port's model folder that ``model_dir`` lacks (an empty list: complete)."""
    d = Path(model_dir)
    out = [f"{g}.onnx" for g in GRAPHS if not (d / f"{g}.onnx").is_file() and not (d / f"{g}_int8.onnx").is_file()]
    return out + ([] if (d / "bpe.model").is_file() else ["bpe.model"])


def precisions(model_dir: Path) -> dict[str, str]:
    """Per graph, the precision IndexTTSInfer(use_int8=True) loads: int8 where an int8 file exists
    and the graph is not one it keeps fp32; otherwise the file named NAME.onnx (which the port's
    ``--quantize`` overwrites with its int8 version: read the file's operators to tell)."""
    d = Path(model_dir)
    out = {}
    for g in GRAPHS:
        if g not in FP32_ONLY and (d / f"{g}_int8.onnx").is_file():
            out[g] = "int8"
        else:
            out[g] = "int8" if _has_int8_ops(d / f"{g}.onnx") else "fp32"
    return out


def _has_int8_ops(path: Path) -> bool:
    """quantize_dynamic's operators in the graph's bytes (its node op types are plain strings of the
    protobuf; the weights live in an external .data file for the big graphs)."""
    ops = (b"DynamicQuantizeLinear", b"MatMulInteger", b"ConvInteger", b"DynamicQuantizeMatMul")
    tail = b""
    try:
        with open(path, "rb") as f:  # in chunks: a graph with its weights inside can be 400 MB
            while chunk := f.read(1 << 24):
                if any(op in tail + chunk for op in ops):
                    return True
                tail = chunk[-64:]
    except OSError:
        pass
    return False


def ban_stop(sample, stop: int = STOP_CODE):
    """``sample(logits, **kw)`` that never returns ``stop``: its logit is -inf before sampling
    (repetition penalty, temperature, top-k and top-p keep it -inf)."""
    def banned(logits, *a, **kw):
        logits = np.array(logits, dtype=np.float64, copy=True)
        logits[stop] = -np.inf
        return sample(logits, *a, **kw)
    return banned


class Clock:
    """Seconds and calls per name; ``wrap`` times an ONNX Runtime session's ``run``."""

    def __init__(self):
        self.s: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float) -> None:
        self.s[name] += seconds
        self.n[name] += 1

    def timed(self, name: str, fn, *a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self.add(name, time.perf_counter() - t0)

    def wrap(self, session, name: str) -> None:
        run = session.run
        session.run = lambda *a, **kw: self.timed(name, run, *a, **kw)

    def reset(self) -> None:
        self.s.clear()
        self.n.clear()


def to_row(clock: Clock, total: float, audio_seconds: float, codes: int) -> dict:
    """One run's figures under our report's names, from the driver's raw timers: ``generate``
    (the whole ``_gpt2_generate`` call) less ``gpt2_forward`` is gpt_generate; each session timer
    becomes our finer timer of the same work, with its call count."""
    s, n = clock.s, clock.n
    row = {"total": total, "audio_seconds": audio_seconds, "codes": codes,
           "text": s.get("text", 0.0), "conditioning": s.get("conditioning", 0.0),
           "gpt_generate": s.get("generate", 0.0) - s.get("gpt2_forward", 0.0),
           "gpt_latents": s.get("gpt2_forward", 0.0), "s2mel": s.get("s2mel", 0.0), "bigvgan": s.get("bigvgan", 0.0)}
    for session, ours in SESSIONS.items():
        if n.get(session):
            row[ours] = s[session]
            row[f"{ours}_calls"] = n[session]
    return row


def measure(tts, infer_mod, work: dict, prompt: str) -> dict:
    """The fixed work on an open ``IndexTTSInfer``: warm-up runs of the first text, then ``runs``
    measured runs of each, every run one segment of exactly the text's codes."""
    clock = Clock()
    infer_mod.top_k_top_p_sample = ban_stop(infer_mod.top_k_top_p_sample)
    for g in ("gpt2_init", "gpt2_step", "gpt2_forward", "dit_step"):
        clock.wrap(getattr(tts, g), g)

    def once(text: dict, seed: int) -> dict:
        np.random.seed(seed)  # the port samples codes and the CFM noise from numpy's global generator
        codes = text["codes"]  # IndexTTS-2's 50 codes per second: the workload's own count
        t0 = time.perf_counter()
        ids = clock.timed("text", lambda: tts.tokenizer.encode(text["text"]))
        segments = tts.tokenizer.split_segments(ids, 120)
        clock.timed("conditioning", tts._prepare_reference, prompt)
        if len(segments) != 1:
            raise RuntimeError(f"text {text['name']}: the port split it into {len(segments)} segments, not one")
        mel_codes, latent = clock.timed("generate", tts._gpt2_generate, tts._cache_spk_cond, segments[0],
                                        tts._cache_emo_cond, max_mel_tokens=codes, top_k=work["top_k"],
                                        top_p=work["top_p"], temperature=work["temperature"],
                                        repetition_penalty=work["repetition_penalty"])
        mel = clock.timed("s2mel", tts._s2mel_inference, mel_codes, latent, tts._cache_prompt_condition,
                          tts._cache_ref_mel, tts._cache_style, n_steps=work["diffusion_steps"],
                          cfg_rate=work["cfg_rate"])
        wav = clock.timed("bigvgan", tts._run_bigvgan, mel)
        wav = np.clip(wav.squeeze(), -1.0, 1.0)  # as infer() does; one segment: nothing to join
        total = time.perf_counter() - t0
        if mel_codes.shape[1] != codes:
            raise RuntimeError(f"text {text['name']}: the port generated {mel_codes.shape[1]} codes, not {codes}")
        return to_row(clock, total, wav.size / 22050.0, int(mel_codes.shape[1]))

    texts = work["texts"]
    for _ in range(work["warmup"]):
        once(texts[0], work["seed"])
    rows = {}
    for t in texts:
        rows[t["name"]] = []
        for r in range(work["runs"]):
            clock.reset()
            rows[t["name"]].append(once(t, work["seed"] + r))
    return rows


def main(argv: list[str]) -> None:
    args = json.loads(Path(argv[0]).read_text())
    work, models = args["workload"], Path(args["peer_models"])
    missing = missing_files(models)
    if missing:
        raise SystemExit(f"{models}: not the port's model folder (missing {', '.join(missing)})")
    import importlib.metadata

    import indextts_onnx.infer as infer_mod

    version = importlib.metadata.version(PORT)
    if version != VERSION:
        raise SystemExit(f"{PORT} {version} is installed; this driver times {VERSION}'s stages")
    t0 = time.perf_counter()
    tts = infer_mod.IndexTTSInfer(str(models), num_threads=work["threads"], use_int8=True)
    load = time.perf_counter() - t0
    rows = measure(tts, infer_mod, work, work["extra"]["prompt_path"])
    out = {"load_seconds": load, "runs": rows, "variant": "indextts-2", "codes_per_second": 50.0,
           "peer": PORT, "peer_version": version, "onnxruntime": importlib.metadata.version("onnxruntime"), "numpy": np.__version__,
           "num_beams": 1, "graph_precisions": precisions(models), "model_dir": str(models.resolve()),
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    Path(argv[1]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    # run as a script, this file's folder comes first on sys.path, and its name would shadow the port's
    # package: ``import indextts_onnx`` must find the port
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    main(sys.argv[1:])
