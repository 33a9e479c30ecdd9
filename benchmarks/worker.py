"""One backend, one process: runs the fixed work and prints its measurements as JSON.

A process per backend keeps each one's peak memory its own and keeps torch out of the ONNX
Runtime measurement. ``python -m indextts_trt.benchmarks.worker ARGS.json OUT.json``.

Finer stages than the pipelines report are timed by wrapping the calls they make: the GPT prefill
and decode steps inside generation (not the latent pass), and each DiT (CFM estimator) call.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .workload import Workload


class Timers:
    def __init__(self):
        self.s: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self.seen: dict[str, int] = {}  # sizes of the work seen inside a run (e.g. the decode step's rows)
        self.phase = ""

    def wrap(self, fn, name_of):
        def timed(*a, **kw):
            name = name_of(a, kw)
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                if name:
                    self.s[name] += time.perf_counter() - t0
                    self.n[name] += 1
        return timed

    @contextmanager
    def during(self, phase: str):
        old, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = old

    def reset(self):
        self.s.clear()
        self.n.clear()
        self.seen.clear()

    def note(self, key: str, value: int, name: str) -> str:
        self.seen[key] = max(self.seen.get(key, 0), int(value))
        return name


def _ort(args: dict, work: Workload, prompt: Path) -> dict:
    from indextts_trt.runtime.pipeline import open_pipeline
    from indextts_trt.runtime.streaming import ChunkPlan

    t0 = time.perf_counter()
    pipe = open_pipeline(args["engine_dir"], providers=args.get("providers"), threads=work.threads or None,
                         precision=args.get("precision", "fp32"))
    for name in pipe.specs:  # runners are opened lazily; open them all here, inside the load time
        pipe.stage(name)
    load = time.perf_counter() - t0
    tm = Timers()
    gen = pipe.generate_steps
    pipe.generate_steps = lambda *a, **k: _in_phase(tm, "generate", gen(*a, **k))
    pipe.prefill = tm.wrap(pipe.prefill, lambda a, k: "gpt_prefill" if tm.phase == "generate" else "")
    dec, dit = pipe.stage("gpt_decode"), pipe.stage("dit_step")
    # rows of a decode step: the beams (a[0] is the step's feed, one cache_len per row)
    dec.run = tm.wrap(dec.run, lambda a, k: tm.note("gpt_decode_rows", len(a[0]["cache_len"]), "gpt_decode_step"))
    dit.run = tm.wrap(dit.run, lambda a, k: "dit_step")

    variant = pipe.variant
    codes = lambda t: work.codes_for(t, variant.codes_per_second)  # noqa: E731

    def once(t, seed):
        r = pipe.synthesize(t.text, prompt, options=work.options(codes(t), seed, variant, t.language))
        return r.seconds, r.duration, [len(s.codes) for s in r.segments]

    def ttfa(t, seed):
        start = time.perf_counter()
        it = pipe.stream(t.text, prompt, options=work.options(codes(t), seed, variant, t.language),
                         chunk=ChunkPlan(*work.stream_chunk))
        next(it)
        first = time.perf_counter() - start
        it.close()  # the rest of the segment is not needed for this figure
        return first

    # the precision each stage ran in: a stage whose reduced graph failed its gate runs fp32
    stages = {s: pipe.stage_precision(s) for s in pipe.specs}
    return _measure(work, codes, once, ttfa, tm, load, {"providers": pipe.providers_in_use, "precision": pipe.precision,
                                                        "stage_precisions": stages, **_about(variant)})


def _about(variant) -> dict:
    return {"variant": variant.name, "codes_per_second": variant.codes_per_second}


def _in_phase(tm: Timers, phase: str, gen):
    with tm.during(phase):
        yield from gen


def _torch(args: dict, work: Workload, prompt: Path) -> dict:
    import torch

    from indextts_trt.reference import open_reference_pipeline

    torch.set_num_threads(work.threads or torch.get_num_threads())
    t0 = time.perf_counter()
    pipe = open_reference_pipeline(args["checkpoints"])  # the variant's reference pipeline
    load = time.perf_counter() - t0
    tm = Timers()
    gen_codes = pipe.generate

    def generate(*a, **k):
        with tm.during("generate"):
            return gen_codes(*a, **k)

    pipe.generate = generate
    gpt = pipe.gpt
    gpt.run_gpt = tm.wrap(gpt.run_gpt, lambda a, k: "" if tm.phase != "generate" else
                          ("gpt_decode_step" if (len(a) > 1 and a[1] is not None) or k.get("past") is not None
                           else "gpt_prefill"))
    est = pipe.s2mel.estimator
    est.forward = tm.wrap(est.forward, lambda a, k: "dit_step")

    variant = pipe.variant
    codes = lambda t: work.codes_for(t, variant.codes_per_second)  # noqa: E731

    def once(t, seed):
        r = pipe.synthesize(t.text, prompt, options=work.options(codes(t), seed, variant, t.language))
        return r.seconds, r.duration, [len(s.codes) for s in r.segments]

    out = _measure(work, codes, once, None, tm, load, {"torch": torch.__version__,
                                                       "torch_threads": torch.get_num_threads(), **_about(variant)})
    out["costs"] = _costs(pipe, work, codes)
    return out


def _costs(pipe, work: Workload, codes) -> dict:
    """What each unit of work must move or compute, for the physical-limit fractions: bytes a GPT
    decode step reads (every weight it multiplies with, plus the KV cache), matmul/conv FLOPs of a
    DiT step (one request: the graph's CFG batch of 2) and of BigVGAN per second of audio (torch's
    FLOP counter). Shapes come from the variant's stage specs, inputs from the stages' parity
    samplers, models through the same adapters the exporter traces, frame counts and text ids from
    the variant's reference pipeline."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from indextts_trt.export.variant import export_variant, run_reference

    cfg, gpt, variant = pipe.cfg, pipe.gpt, pipe.variant
    ev = export_variant(variant.name)
    specs, sources = ev.runtime.stage_specs(cfg), ev.sources
    weights = sum(p.numel() * p.element_size() for m in (gpt.gpt, gpt.final_norm, gpt.mel_head)
                  for name, p in m.named_parameters()
                  if not isinstance(m.get_submodule(name.rpartition(".")[0]), torch.nn.Embedding))
    dec = specs["gpt_decode"]
    part = dec.input(dec.cache.inputs[0])
    kv_per_pos = (len(dec.cache.inputs) * int(np.prod(dec.shape(part, {"B": work.num_beams, "CAP": 1})))
                  * part.np_dtype().itemsize)

    def flops(stage: str, model, sizes: dict) -> int:
        spec = specs[stage]
        feed = sources[stage].sampler(spec, spec.resolve(sizes), np.random.default_rng(0))
        with FlopCounterMode(display=False) as fc:
            run_reference(sources[stage].adapter(model).eval(), spec, feed)
        return fc.get_total_flops()

    t_ref = pipe.speaker(work.extra["prompt_path"]).ref_mel.shape[-1]
    opts = {t.name: work.options(codes(t), work.seed, variant, t.language) for t in work.texts}
    dit = {t.name: flops("dit_step", pipe.s2mel, {"B": 1, "T": t_ref + pipe.mel_frames(codes(t), opts[t.name])})
           for t in work.texts}
    frames = round(cfg.sample_rate / cfg.hop_length)  # ≈ 1 s of audio
    bigvgan_per_s = flops("bigvgan", pipe.bigvgan, {"T_mel": frames}) / (frames * cfg.hop_length / cfg.sample_rate)
    n_conds = specs["gpt_prefill"].input("conds").shape[1]
    positions = {}
    for t in work.texts:  # cache length while decoding: conditioning rows, text with bounds, start, codes
        ids = [i for i in pipe.text_segments(t.text, opts[t.name])[0] if i not in (0, 1)]
        positions[t.name] = n_conds + (len(ids) + 2) + 1 + codes(t) / 2
    nbytes = lambda m: int(sum(p.numel() * p.element_size() for p in m.parameters()))  # noqa: E731
    return {"gpt_step_weight_bytes": int(weights), "kv_bytes_per_position": kv_per_pos,
            "dit_weight_bytes": nbytes(pipe.s2mel.estimator), "bigvgan_weight_bytes": nbytes(pipe.bigvgan),
            "gpt_mean_cache_positions": positions,
            "dit_step_flops": dit, "bigvgan_flops_per_audio_second": bigvgan_per_s, "prompt_mel_frames": t_ref}


def _measure(work: Workload, codes_of, once, ttfa, tm: Timers, load: float, info: dict) -> dict:
    texts = work.texts
    for _ in range(work.warmup):  # sessions, allocator, cached prompt conditioning
        once(texts[0], work.seed)
    rows = {}
    for t in texts:
        runs = []
        for r in range(work.runs):
            tm.reset()
            t0 = time.perf_counter()
            secs, dur, codes = once(t, work.seed + r)
            total = time.perf_counter() - t0
            if codes != [codes_of(t)]:
                raise RuntimeError(f"text {t.name}: expected one segment of {codes_of(t)} codes, got {codes}; the "
                                   f"fixed work is broken (segmenting or min/max codes)")
            runs.append({"total": total, "audio_seconds": dur, "codes": codes[0], **secs,
                         **{k: v for k, v in tm.s.items()}, **{f"{k}_calls": v for k, v in tm.n.items()}, **tm.seen})
        rows[t.name] = runs
    out = {"load_seconds": load, "runs": rows, **info}
    if ttfa is not None:
        t = max(texts, key=lambda x: x.codes)
        out["ttfa"] = {"text": t.name, "chunk": list(work.stream_chunk),
                       "seconds": [ttfa(t, work.seed + r) for r in range(work.runs)]}
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main(argv: list[str]) -> None:
    args = json.loads(Path(argv[0]).read_text())
    work = Workload.from_json(args["workload"])
    prompt = Path(work.extra["prompt_path"])
    fn = {"ort": _ort, "torch": _torch}[args["backend"]]
    res = fn(args, work, prompt)
    res["numpy"] = np.__version__
    Path(argv[1]).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
