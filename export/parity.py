"""The parity gate: ONNX Runtime against the PyTorch reference on fresh seeded inputs at several
shapes, each output judged by its own tolerance statistic. A failure is a failure (the build
exits non-zero), never a warning.

One rule per statistic, computed once and reported as it was judged: for 'max' and 'quantile'
the measure is the element-wise ratio |got − ref| / (atol + rtol·|ref|), its maximum or its
q-quantile, and the output passes when the measure is at most 1; 'snr' (waveforms) passes at
SNR ≥ snr_db; 'exact' (integer codes) at zero mismatches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from indextts_trt.runtime.spec import StageSpec, Tolerance


@dataclass(frozen=True)
class OutputCheck:
    stage: str
    point: str
    sizes: str
    output: str
    stat: str
    max_abs_err: float
    measure: float  # the value the statistic judged (max/quantile error ratio, SNR dB, mismatches)
    limit: str
    passed: bool

    def to_json(self) -> dict:
        return asdict(self)


def judge(ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> tuple[bool, float, float, str]:
    """(passed, max_abs_err, measure, limit description); ``passed`` follows from ``measure`` alone."""
    if ref.shape != got.shape:
        return False, float("inf"), float("inf"), f"shape {got.shape} != reference {ref.shape}"
    if tol.stat == "exact":
        mism = int(np.count_nonzero(ref != got))
        return mism == 0, float(np.abs(ref.astype(np.float64) - got).max(initial=0.0)), float(mism), "0 mismatches"
    # float32 arithmetic, no float64 copies: full-size outputs reach hundreds of MB (the KV cache)
    r, g = ref, got
    err = np.abs(r - g)
    max_abs = float(err.max(initial=0.0))
    if not np.all(np.isfinite(g)):
        return False, max_abs, float("nan"), "finite outputs"
    if tol.stat == "snr":
        snr = 10 * np.log10((np.sum(np.square(r, dtype=np.float64)) + 1e-30) /
                            (np.sum(np.square(err, dtype=np.float64)) + 1e-30))
        return bool(snr >= tol.snr_db), max_abs, float(snr), f">= {tol.snr_db} dB"
    ratio = err / (tol.atol + tol.rtol * np.abs(r))
    del err
    measure = float(np.quantile(ratio, tol.quantile)) if tol.stat == "quantile" else float(ratio.max(initial=0.0))
    limit = f"atol {tol.atol:g} rtol {tol.rtol:g}" + (f" at q{tol.quantile:g}" if tol.stat == "quantile" else "")
    return measure <= 1.0, max_abs, measure, limit


def parity_points(spec: StageSpec) -> dict[str, dict[str, int]]:
    """Export shape (opt), the range minimum and maximum, and an awkward odd size in between."""
    from .onnx_export import export_sizes

    awk = {}
    for d in spec.free_dims:
        v = d.min + (d.max - d.min) * 3 // 8
        awk[d.name] = min(max(v | 1, d.min), d.max)
    return {"opt": export_sizes(spec), "min": spec.sizes_at("min"), "awkward": spec.resolve(awk),
            "max": spec.sizes_at("max")}


def check_stage(spec: StageSpec, run_ref, run_ort, sampler, precision: str = "fp32", seed: int = 0,
                points: tuple[str, ...] = ("opt", "min", "awkward", "max")) -> list[OutputCheck]:
    """Run both sides on fresh inputs at each point and judge every output."""
    checks: list[OutputCheck] = []
    all_points = parity_points(spec)
    for i, point in enumerate(points):
        sizes = all_points[point]
        feed = sampler(spec, sizes, np.random.default_rng(seed + 1000 + i))
        ref, got = run_ref(feed), run_ort(feed)
        sz = " ".join(f"{d.name}={sizes[d.name]}" for d in spec.free_dims)
        for t in spec.outputs:
            tol = spec.tolerance(t.name, precision)
            ok, max_abs, measure, limit = judge(ref[t.name], got[t.name], tol)
            checks.append(OutputCheck(spec.name, point, sz, t.name, tol.stat, max_abs, measure, limit, ok))
    return checks


def failure_table(checks: list[OutputCheck]) -> str:
    bad = [c for c in checks if not c.passed]
    if not bad:
        return ""
    rows = [f"{'stage':<22}{'point':<9}{'output':<18}{'stat':<9}{'max|err|':>11}{'measure':>11}  limit / sizes"]
    for c in bad:
        rows.append(f"{c.stage:<22}{c.point:<9}{c.output:<18}{c.stat:<9}{c.max_abs_err:>11.3g}{c.measure:>11.3g}"
                    f"  {c.limit} / {c.sizes}")
    return "\n".join(rows)
