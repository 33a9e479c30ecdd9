"""fp16/bf16 safety analysis: which layers must stay fp32 (the "islands" of the build plan).

TensorRT in fp16 stores activations and weights in half precision and accumulates GEMMs in fp32.
We emulate that on the PyTorch reference, on any device: every leaf module's weights and float
outputs are rounded to the reduced type (a value beyond fp16's 65 504 becomes inf, exactly as it
would on the GPU), the rest is computed in fp32. The stage's outputs are then judged against the
fp32 run with the stage spec's tolerance for that precision.

Islands are chosen greedily: first every module whose fp32 output already exceeds the reduced
type's range (overflow), then, while the stage still fails, the candidate group (norms, attention,
the perceiver, BigVGAN's snake activations, the output heads...) that lowers the error most. If all
candidates together do not pass, the whole stage is kept in fp32 and the report says so.

Limits, stated: only module outputs are rounded, not intermediates inside one module's forward
(e.g. attention scores inside an attention block); inputs come from the stage's parity samplers at
its typical ("opt") size, not from recorded speech.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from indextts_trt.runtime.spec import StageSpec

from .parity import judge
from .variant import Sampler, run_reference

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
RANGE = {"fp16": 65504.0, "bf16": 3.38e38}

# candidate fp32 islands: a name and a predicate on (module path, module). Peers report the
# perceiver, attention masks/softmax, norms in the GPT and BigVGAN's sin of large arguments.
CANDIDATES: tuple[tuple[str, object], ...] = (
    ("norms", lambda p, m: "norm" in type(m).__name__.lower() or re.search(r"(^|\.)(ln|norm)[^.]*$", p) is not None),
    ("attention", lambda p, m: "attention" in type(m).__name__.lower() or re.search(r"(^|\.)(attn|attention)", p)),
    ("perceiver", lambda p, m: "perceiver" in p.lower()),
    ("activations", lambda p, m: any(k in type(m).__name__.lower() for k in ("snake", "activation1d", "act"))),
    ("embeddings", lambda p, m: isinstance(m, nn.Embedding) or "embed" in p.lower()),
    ("heads", lambda p, m: re.search(r"(head|proj_out|final|conv_post|out_proj)[^.]*$", p) is not None),
)


@dataclass
class StagePrecision:
    stage: str
    precision: str
    sizes: dict
    errors_without: dict  # output -> {max_abs_err, measure, limit, passed}
    passed_without: bool
    overflow: list[str]  # modules whose fp32 output exceeds the reduced range
    islands: list[str]  # module paths kept in fp32 (a "" entry: the whole stage)
    groups: list[str]  # candidate groups chosen, in order
    errors_with: dict
    passed_with: bool
    max_abs_activation: float
    note: str = ""
    # every candidate group in fp32 at once: how much of the reduced-precision error the usual
    # suspects account for, whether or not the stage needed them
    errors_all_candidates: dict = field(default_factory=dict)
    trials: list[dict] = field(default_factory=list)

    @property
    def whole_stage_fp32(self) -> bool:
        return self.islands == [""]

    def to_json(self) -> dict:
        return asdict(self)


def leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {p: m for p, m in model.named_modules() if p and not any(True for _ in m.children())}


@contextmanager
def reduced(model: nn.Module, precision: str, keep: set[str]):
    """Round weights and float outputs of every leaf module outside ``keep`` (paths, with their
    sub-paths) to ``precision`` for the duration."""
    dt = DTYPES[precision]
    handles = []

    def kept(path: str) -> bool:
        return any(path == k or path.startswith(k + ".") or k == "" for k in keep)

    def pre(mod, args):
        mod._fp32_params = [(p, p.data) for p in mod.parameters(recurse=False)]
        for p, d in mod._fp32_params:
            if d.is_floating_point():
                p.data = d.to(dt).float()

    def post(mod, args, out):
        for p, d in mod._fp32_params:
            p.data = d
        del mod._fp32_params
        return _round(out, dt)

    for path, m in leaf_modules(model).items():
        if not kept(path):
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _round(out, dt):
    if isinstance(out, torch.Tensor):
        return out.to(dt).float() if out.is_floating_point() else out
    if isinstance(out, tuple):
        return tuple(_round(o, dt) for o in out)
    if isinstance(out, list):
        return [_round(o, dt) for o in out]
    return out


def activation_peaks(model: nn.Module, spec: StageSpec, feed: dict) -> dict[str, float]:
    """Max |output| of every leaf module in the fp32 run."""
    peaks: dict[str, float] = {}
    handles = []
    for path, m in leaf_modules(model).items():
        def hook(mod, args, out, path=path):
            ts = [out] if isinstance(out, torch.Tensor) else [o for o in (out if isinstance(out, (tuple, list)) else [])
                                                               if isinstance(o, torch.Tensor)]
            for t in ts:
                if t.is_floating_point() and t.numel():
                    peaks[path] = max(peaks.get(path, 0.0), float(t.detach().abs().max()))
        handles.append(m.register_forward_hook(hook))
    try:
        run_reference(model, spec, feed)
    finally:
        for h in handles:
            h.remove()
    return peaks


def _judge_all(spec: StageSpec, ref: dict, got: dict, precision: str) -> tuple[bool, dict]:
    res, ok = {}, True
    for t in spec.outputs:
        g = got[t.name]
        if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
            passed, err, measure, limit = False, float("inf"), float("inf"), "finite"
        else:
            passed, err, measure, limit = judge(ref[t.name], g, spec.tolerance(t.name, precision))
        res[t.name] = {"max_abs_err": float(err), "measure": float(measure), "limit": limit, "passed": bool(passed)}
        ok &= bool(passed)
    return ok, res


def _score(res: dict) -> float:
    """One number to rank islands: the worst output's measure relative to passing (lower is better)."""
    worst = 0.0
    for r in res.values():
        m = r["measure"]
        if not np.isfinite(m):
            return float("inf")
        worst = max(worst, -m if r["limit"].endswith("dB") else m)  # SNR: higher is better
    return worst


def analyze_stage(model: nn.Module, spec: StageSpec, sampler: Sampler, precision: str = "fp16", point: str = "opt",
                  seed: int = 0, sizes: dict | None = None) -> StagePrecision:
    if precision not in DTYPES:
        raise ValueError(f"precision analysis: {precision!r} is not one of {', '.join(DTYPES)}")
    sizes = sizes or spec.sizes_at(point)
    feed = sampler(spec, sizes, np.random.default_rng(seed))
    ref = run_reference(model, spec, feed)
    peaks = activation_peaks(model, spec, feed)
    leaves = leaf_modules(model)

    def trial(keep: set[str]) -> tuple[bool, dict]:
        with reduced(model, precision, keep):
            return _judge_all(spec, ref, run_reference(model, spec, feed), precision)

    ok0, res0 = trial(set())
    overflow = sorted(p for p, v in peaks.items() if v > RANGE[precision] / 2)  # headroom: one doubling
    islands, groups, trials = set(overflow), [], []
    ok, res = (ok0, res0) if not islands else trial(islands)
    remaining = list(CANDIDATES)
    while not ok and remaining:
        scored = []
        for name, pred in remaining:
            members = {p for p, m in leaves.items() if pred(p, m)} - islands
            if not members:
                continue
            t_ok, t_res = trial(islands | members)
            trials.append({"group": name, "modules": len(members), "passed": t_ok, "score": _score(t_res)})
            scored.append((_score(t_res), name, members, t_ok, t_res))
        if not scored:
            break
        best = min(scored, key=lambda s: s[0])
        islands |= best[2]
        groups.append(best[1])
        ok, res = best[3], best[4]
        remaining = [c for c in remaining if c[0] != best[1]]
    every = set(overflow)
    for _, pred in CANDIDATES:
        every |= {p for p, m in leaves.items() if pred(p, m)}
    errors_all = trial(every)[1]
    note = ""
    if not ok:
        islands, groups, note = {""}, groups + ["whole stage"], "no island set passes: the whole stage stays fp32"
        ok, res = True, {k: {**v, "passed": True} for k, v in _judge_all(spec, ref, ref, precision)[1].items()}
    return StagePrecision(spec.name, precision, dict(sizes), res0, ok0, overflow, sorted(islands), groups, res, ok,
                          max(peaks.values(), default=0.0), note=note, trials=trials,
                          errors_all_candidates=errors_all)


def markdown(results: list[StagePrecision], title: str) -> str:
    lines = [f"# {title}", "",
             "Reduced precision emulated on the PyTorch reference (weights and leaf-module outputs rounded; "
             "see export/precision.py), judged against fp32 with each stage's tolerance for that precision.", "",
             "| stage | precision | sizes | without islands: worst error (measure) | ok | overflowing modules "
             "| fp32 islands | with islands: worst error (measure) | ok | every candidate group fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def worst(errs):
        k = max(errs, key=lambda o: errs[o]["max_abs_err"])
        return f"{k}: {errs[k]['max_abs_err']:.3g} ({errs[k]['measure']:.3g} vs {errs[k]['limit']})"

    for r in results:
        isl = "whole stage" if r.whole_stage_fp32 else (f"{len(r.islands)} modules ({', '.join(r.groups)})"
                                                          if r.islands else "none")
        lines.append(f"| {r.stage} | {r.precision} | {r.sizes} | {worst(r.errors_without)} | "
                     f"{'yes' if r.passed_without else 'no'} | {len(r.overflow)} | {isl} | {worst(r.errors_with)} | "
                     f"{'yes' if r.passed_with else 'no'} | "
                     f"{worst(r.errors_all_candidates) if r.errors_all_candidates else '–'} |")
    return "\n".join(lines) + "\n"


def analyze(models, specs: dict[str, StageSpec], stages, precision: str, progress: bool = False) -> list[StagePrecision]:
    from tqdm import tqdm

    out = []
    for name in tqdm(list(stages), desc=f"{precision} analysis", unit="stage", disable=not progress):
        out.append(analyze_stage(models.adapter(name), specs[name], models.variant.sources[name].sampler, precision))
    return out


__all__ = ["analyze", "analyze_stage", "StagePrecision", "markdown", "reduced", "CANDIDATES"]
