"""``tts-export build --precision fp16|bf16``: each stage's mixed-precision graph, gated like the
fp32 export, recorded in the manifest (``stages.<name>.graphs.<precision>``).

The fp16 graph is what TensorRT builds (strongly typed: the precision is the graph's types) and
what ONNX Runtime runs for ``tts-run --precision fp16``, so it is judged itself: ONNX Runtime's CPU
provider runs it against the fp32 PyTorch reference on fresh seeded inputs at the parity points,
with the spec's tolerances for the precision. The fp32 islands are chosen by those measurements,
trying in order
  1. no islands;
  2. the islands the PyTorch emulation proposes (``precision.analyze_stage``: fast, a first guess);
  3. those plus every candidate group (norms, attention, perceiver, activations, embeddings, heads);
and keeping the first graph that passes at every point. A stage none of them saves keeps its fp32
graph, with the failure recorded as the reason: the build reports it, never silently.

int8 (``int8_quant.py``): ONNX Runtime's quantizers (and our per-row rewrite on its kernel) make the
weight MatMuls (and the Gemms and 1-D convolutions rewritten as MatMul) int8 (I/O, KV cache and
every other op stay fp32), for ONNX Runtime's CPU provider only (TensorRT's int8 needs Q/DQ
calibration, which this does not do). The same gate judges it with the spec's int8 tolerances; the
trials are the schemes (``dynamic``, ``rows``, then the more accurate ``blocks``) with nothing
excluded, then all three with exclusion lists (MatMuls left fp32: the islands' part) growing one
group at a time, the rewritten convolutions first (``int8_quant.trials``). Which passing graph is
kept is ``int8_pick``'s: by default the fastest on the build machine (fp32 included: a stage whose
int8 graphs are all slower keeps fp32 and says so), or the first. A stage whose spec states no int8
tolerance, or with no weight MatMul, keeps its fp32 graph with that reason.

bf16: ONNX Runtime's CPU provider has no bf16 kernels (export/mixed_precision.py), so the bf16
graph is written and type-checked with the emulation's islands but not gated here; the runtime
refuses to run it on ONNX Runtime, and TensorRT's engine gate (``engines.build_and_check``) is
the check that remains for it, on a GPU.

Cache: a stage's graph is redone when its fp32 graph, the precision, the converter's version or
this code change (``cache_key``; for int8 also its settings, the pick, and under ``fastest`` the
CPU it was timed on); judged again when only the check (tolerances, points, the gate's
code, ONNX Runtime's version) changed. A re-exported fp32 graph drops its converted graphs
(``build.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from indextts_trt.runtime.files import sha256_file, write_text_atomic
from indextts_trt.runtime.manifest import load_manifest
from indextts_trt.runtime.spec import StageSpec

from .manifest import cache_key, files_fingerprint, library_versions, save_manifest
from .parity import OutputCheck, judge, parity_points

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
CODE = (_HERE / "precision_graphs.py", _HERE / "mixed_precision.py", _HERE / "precision.py", _HERE / "trt_plan.py")
INT8_CODE = (*CODE, _HERE / "int8_quant.py", _HERE / "int8_pick.py")
GATE_CODE = (_HERE / "parity.py",)
GATED = ("fp16", "int8")  # precisions ONNX Runtime's CPU provider can run
UNGATED_REASON = {"bf16": "ONNX Runtime's CPU provider has no bf16 kernels: written and type-checked, not gated "
                          "(TensorRT's engine gate checks it on a GPU)"}


@dataclass
class Trial:
    name: str  # none | emulation | all candidates
    modules: int
    nodes: int
    passed: bool
    worst: dict = field(default_factory=dict)  # the output furthest from passing: output, point, measure, limit
    ms: float | None = None  # int8 --int8-pick fastest: ms per call at the timing point (int8_pick)


@dataclass
class StageGraph:
    stage: str
    precision: str  # the graph's precision: the asked one, or fp32 (fallback)
    chosen: str  # the trial kept, "fp32 fallback", or "cached"
    trials: list[Trial]
    note: str = ""
    seconds: float = 0.0


def _feed_digest(feed: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(feed):
        a = np.ascontiguousarray(feed[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def _worst(checks: list[OutputCheck]) -> dict:
    def badness(c):  # relative to passing, SNR flipped: larger is worse
        if not np.isfinite(c.measure):
            return float("inf")
        return -c.measure if c.limit.endswith("dB") else c.measure

    c = max(checks, key=badness)
    return {"output": c.output, "point": c.point, "max_abs_err": c.max_abs_err, "measure": c.measure, "limit": c.limit}


class _Gate:
    """A stage's parity points: seeded feeds and fp32 reference outputs made once, judged against
    any number of candidate graphs."""

    def __init__(self, spec: StageSpec, module, sampler, precision: str, points: tuple[str, ...]):
        from .variant import run_reference

        self.spec, self.precision = spec, precision
        sizes = parity_points(spec)
        self.points = []
        for i, point in enumerate(points):  # the seeds of the fp32 gate (parity.check_stage)
            feed = sampler(spec, sizes[point], np.random.default_rng(1000 + i))
            sz = " ".join(f"{d.name}={sizes[point][d.name]}" for d in spec.free_dims)
            self.points.append((point, sz, feed, run_reference(module, spec, feed)))

    @property
    def timing_feed(self) -> dict:
        """The feed int8_pick times graphs on: the opt point's (the export shape), else the first."""
        return next((feed for point, _, feed, _ in self.points if point == "opt"), self.points[0][2])

    def judge(self, onnx_path: Path) -> list[OutputCheck]:
        from .mixed_precision import ort_runner

        run = ort_runner(onnx_path)
        checks = []
        for point, sz, feed, ref in self.points:
            got = run(feed)
            for t in self.spec.outputs:
                tol = self.spec.tolerance(t.name, self.precision)
                g = got[t.name]
                if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
                    ok, err, measure, limit = False, float("inf"), float("inf"), "finite"
                else:
                    ok, err, measure, limit = judge(ref[t.name], g, tol)
                checks.append(OutputCheck(self.spec.name, point, sz, t.name, tol.stat, float(err), float(measure),
                                          limit, bool(ok)))
        del run
        return checks


def _island_trials(module, analysis: dict) -> list[tuple[str, list[str]]]:
    """(name, module paths) to try, smallest first, without repeats."""
    from .precision import CANDIDATES, leaf_modules

    guess = [] if analysis["islands"] == [""] else list(analysis["islands"])
    leaves = leaf_modules(module)
    every = set(guess) | set(analysis.get("overflow", []))
    for _, pred in CANDIDATES:
        every |= {p for p, m in leaves.items() if pred(p, m)}
    trials, seen = [], set()
    for name, isl in (("none", []), ("emulation", sorted(guess)), ("all candidates", sorted(every))):
        if tuple(isl) not in seen:
            seen.add(tuple(isl))
            trials.append((name, isl))
    return trials


def _slug(trial: str) -> str:
    return trial.replace(", ", "_").replace(" ", "_").replace("+", "")


def _int8_ladder(module, fp32_path: Path, gate: _Gate, tmp: Path, stem: str, pick: str, timer):
    """int8_pick.choose over int8_quant.trials: each attempt converts, gates and (``fastest``) times
    one graph in its own folder under ``tmp``; a failed one's graph is removed at once (at full
    size each is up to 2 GB). Returns (trials, kept as (name, paths, nodes, checks) or None, the
    kept graph's folder, a note when fp32 is faster, the timing record or None)."""
    import shutil

    from . import int8_pick, int8_quant

    def attempt(t):
        name, scheme, _, nodes = t
        where = tmp / _slug(name)
        where.mkdir()
        int8_quant.convert_int8(fp32_path, where / stem, nodes, scheme)
        checks = gate.judge(where / stem)
        ms = timer(where / stem, gate.timing_feed) if pick == "fastest" else None
        a = int8_pick.Attempt(all(c.passed for c in checks), checks, where, ms)
        if not a.passed:
            shutil.rmtree(where)
        return a

    done, kept, fp32_ms = int8_pick.choose(int8_quant.trials(module, fp32_path), attempt, pick,
                                           lambda: timer(fp32_path, gate.timing_feed))
    trials = [Trial(a.name, len(a.paths), len(a.nodes), a.passed, _worst(a.checks),
                    None if a.ms is None else _ms(a.ms)) for a in done]
    timing, note = None, ""
    if fp32_ms is not None:
        point = next((p for p, _, feed, _ in gate.points if feed is gate.timing_feed), "?")
        timing = {"point": point, "fp32_ms": _ms(fp32_ms), "threads": int8_pick.timing_threads()}
        if kept is None:
            fastest = min((a for a in done if a.passed), key=lambda a: a.ms)
            note = (f"fp32 is faster on this CPU: {_ms_text(fp32_ms)} ms at {point} against {_ms_text(fastest.ms)} ms for the "
                    f"fastest passing int8 graph ({fastest.name}); the stage runs its fp32 graph")
    if kept is None:
        return trials, None, None, note, timing
    return trials, (kept.name, kept.paths, kept.nodes, kept.checks), kept.where, note, timing


def _ms(x: float) -> float:
    """A recorded time: to the microsecond, since the tiny test graphs take a fraction of a ms and
    a coarser record would no longer show which graph the margin rule made faster."""
    return round(x, 3)


def _ms_text(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _analysis(models, out: Path, name: str, spec: StageSpec, precision: str, fp32_sha: str) -> dict:
    """The PyTorch emulation's result for a stage (``precision_<p>.json``), reused while its fp32
    graph is unchanged."""
    from .precision import analyze_stage

    path = out / f"precision_{precision}.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    if stored.get(name, {}).get("onnx_sha256") == fp32_sha:
        return stored[name]
    r = analyze_stage(models.adapter(name), spec, models.variant.sources[name].sampler, precision)
    stored[name] = {**r.to_json(), "onnx_sha256": fp32_sha}
    write_text_atomic(path, json.dumps(stored, indent=1))
    return stored[name]


def _move_into(tmp: Path, out: Path, stem: str) -> dict[str, str]:
    """Move a converted graph (and its external weights, if any) from ``tmp`` into ``out``;
    remove what an earlier conversion of the same stage left that this one did not write."""
    produced = sorted(p.name for p in tmp.iterdir())
    for old in out.glob(f"{stem}*"):
        if old.name not in produced:
            old.unlink()
    for f in produced:
        os.replace(tmp / f, out / f)
    return {f: sha256_file(out / f) for f in produced}


def _drop_files(out: Path, stem: str) -> None:
    for old in out.glob(f"{stem}*"):
        old.unlink()


def make_precision_graphs(checkpoints, out: str | Path, precision: str, points: tuple[str, ...],
                          force: bool = False, progress: bool = True, log_line=print, int8_pick: str = "fastest",
                          timer=None) -> list[StageGraph]:
    """Write and gate every stage's ``precision`` graph of the built directory ``out``; record each
    in the manifest. Returns one :class:`StageGraph` per stage, in pipeline order. int8 only:
    ``int8_pick`` (int8_pick.PICKS) and ``timer`` ((graph path, feed) → ms; int8_pick.time_graph)."""
    from .int8_pick import PICKS

    if int8_pick not in PICKS:
        raise ValueError(f"int8 pick {int8_pick!r}: use one of {', '.join(PICKS)}")
    from filelock import FileLock, Timeout

    out = Path(out)
    try:
        with FileLock(str(out / ".build.lock"), timeout=0):
            return _make(checkpoints, out, precision, points, force, progress, log_line, int8_pick, timer)
    except Timeout:
        from .build import BuildError

        raise BuildError(f"another tts-export build is writing {out}; wait for it or use another --out") from None


def _make(checkpoints, out: Path, precision: str, points: tuple[str, ...], force: bool, progress: bool,
          log_line, int8_pick: str, timer) -> list[StageGraph]:
    from tqdm import tqdm

    from .build import TMP_PREFIX
    from .mixed_precision import _modelopt_version, convert, io_policy
    from .trt_plan import island_nodes
    from .variant import ReferenceModels

    manifest = load_manifest(out)
    models = ReferenceModels(checkpoints)
    specs, ev = models.variant.runtime.stage_specs(models.cfg), models.variant
    if precision == "int8":
        from . import int8_pick as ip
        from . import int8_quant

        code, converter = files_fingerprint(INT8_CODE), int8_quant.converter_name()
        key_extra = {"settings": int8_quant.SETTINGS, **ip.timing_key(int8_pick)}
        timer = timer or ip.time_graph
    else:
        code, converter, key_extra = files_fingerprint(CODE), f"modelopt {_modelopt_version()}", {}
    gate_key = {"code": files_fingerprint(GATE_CODE), "onnxruntime": library_versions()["onnxruntime"],
                "points": list(points)}
    results = []
    names = list(manifest["stages"])
    for name in tqdm(names, desc=f"{precision} graphs", unit="stage", disable=not progress):
        t0 = time.perf_counter()
        entry, spec = manifest["stages"][name], specs[name]
        fp32_sha = entry["files"][entry["onnx"]]
        key = cache_key({"fp32": fp32_sha, "precision": precision, "converter": converter, "code": code, **key_extra})
        check = cache_key({"spec": spec.check_key(), "precision": precision, **gate_key})
        old = (entry.get("graphs") or {}).get(precision)
        if (not force and old and old.get("cache_key") == key and (old.get("parity") or {}).get("check_key") == check
                and all((out / f).is_file() and sha256_file(out / f) == h for f, h in old["files"].items())):
            results.append(StageGraph(name, old["precision"], "cached", [Trial(**t) for t in old.get("trials", [])],
                                      old.get("note", "")))
            continue
        stem = f"{name}.{precision}.onnx"
        fp32_path = out / entry["onnx"]
        skip = int8_quant.skip_reason(spec, fp32_path) if precision == "int8" else ""
        analysis = _analysis(models, out, name, spec, precision, fp32_sha) if precision != "int8" else None
        trials, kept, note, record, timing = [], None, skip, {}, None
        src_dir = None
        with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{precision}-{name}-", dir=out) as tmpdir:
            tmp = Path(tmpdir)
            if skip:
                pass
            elif precision not in GATED:
                if analysis["islands"] != [""]:  # else the emulation keeps the whole stage fp32: the fallback
                    nodes = island_nodes(fp32_path, analysis["islands"])
                    convert(fp32_path, tmp / stem, precision, nodes, io_policy(spec, precision))
                    kept, note = ("emulation", analysis["islands"], nodes, []), UNGATED_REASON[precision]
                    src_dir = tmp
                parity = {"passed": None, "gated": False, "reason": UNGATED_REASON[precision], "check_key": check}
            else:
                module = models.adapter(name)
                gate = _Gate(spec, module, ev.sources[name].sampler, precision, points)
                if precision == "int8":
                    trials, kept, src_dir, note, timing = _int8_ladder(module, fp32_path, gate, tmp, stem,
                                                                       int8_pick, timer)
                for tname, isl in (_island_trials(module, analysis) if precision != "int8" else []):
                    nodes = island_nodes(fp32_path, isl)
                    if isl and not nodes:
                        raise ValueError(f"stage {name}: the fp32 islands {isl[:3]}... match no node of "
                                         f"{fp32_path.name}: the graph lacks name_scopes metadata")
                    try_dir = tmp / _slug(tname)
                    try_dir.mkdir()
                    convert(fp32_path, try_dir / stem, precision, nodes, io_policy(spec, precision))
                    checks = gate.judge(try_dir / stem)
                    ok = all(c.passed for c in checks)
                    trials.append(Trial(tname, len(isl), len(nodes), ok, _worst(checks)))
                    if ok:
                        kept, src_dir = (tname, isl, nodes, checks), try_dir
                        break
                parity = {"passed": True, "precision": precision, "check_key": check,
                          "checks": [c.to_json() for c in kept[3]]} if kept else None
            if kept:
                files = _move_into(src_dir, out, stem)
                record = {"onnx": stem, "files": files, "sizes": {f: (out / f).stat().st_size for f in files},
                          "precision": precision, "islands": kept[1], "island_nodes": len(kept[2]),
                          "chosen": kept[0], "parity": parity}
        if not kept:
            faster = bool(note) and not skip  # int8_pick: every passing int8 graph is slower than fp32
            if skip or faster:
                pass
            elif trials:
                w = trials[-1].worst
                note = (f"{precision} fails parity even with every candidate island ({w['output']} at {w['point']}: "
                        f"{w['measure']:.3g} vs {w['limit']}); the stage runs its fp32 graph")
            else:
                note = f"the {precision} emulation fails with every candidate island; the stage runs its fp32 graph"
            _drop_files(out, stem)
            record = {"onnx": entry["onnx"], "files": dict(entry["files"]), "sizes": dict(entry.get("sizes") or {}),
                      "precision": "fp32", "islands": [""], "island_nodes": 0,
                      "chosen": "fp32 (not quantized)" if skip else "fp32 (faster)" if faster else "fp32 fallback",
                      "parity": {"passed": True, "precision": "fp32", "check_key": check,
                                 "checks": entry["parity"]["checks"]}}
        record.update(note=note, cache_key=key, converter=converter, trials=[asdict(t) for t in trials])
        if timing:
            record["timing"] = timing
        if analysis is not None:
            record["emulation"] = {"islands": len(analysis["islands"]), "passed_without": analysis["passed_without"]}
        if key_extra:
            record.update(key_extra)
        entry.setdefault("graphs", {})[precision] = record
        save_manifest(out, manifest)
        res = StageGraph(name, record["precision"], record["chosen"], trials, note, time.perf_counter() - t0)
        results.append(res)
        log_line(f"  {precision:<5s} {name:<22s} {res.seconds:6.1f} s  {_summary(record)}")
        later = names[names.index(name) + 1:]
        if all(ev.sources[s].model != ev.sources[name].model for s in later):
            models.release(ev.sources[name].model)  # full size: GBs per model
    write_text_atomic(out / f"precision_{precision}_report.md", report_markdown(manifest, precision))
    return results


def _summary(record: dict) -> str:
    if record["chosen"] == "fp32 fallback":
        return "fp32 (fallback: " + record["note"] + ")"
    if record["chosen"] in ("fp32 (not quantized)", "fp32 (faster)"):
        return "fp32 (" + record["note"] + ")"
    isl = f"{record['island_nodes']} fp32 island nodes" if record["island_nodes"] else "no islands"
    gated = "parity passed" if record["parity"]["passed"] else "not gated"
    return f"{record['precision']}, {isl} ({record['chosen']}), {gated}"


def report_markdown(manifest: dict, precision: str) -> str:
    picks = {g.get("pick") for e in manifest["stages"].values() if (g := (e.get("graphs") or {}).get(precision))}
    kept = ("the fastest passing graph at the timing point is kept (ms per call; fp32 when it is faster: "
            "`--int8-pick fastest`, export/int8_pick.py)" if "fastest" in picks else "the first that passes is kept")
    lines = [f"# {precision} graphs (ONNX Runtime CPU vs the fp32 PyTorch reference)", "",
             "Each trial is the converted graph itself, judged at every parity point with the spec's "
             f"{precision} tolerances (measure ≤ 1 passes; SNR in dB); {kept}.", "",
             "| stage | graph | islands kept | trial: worst output (point) measure vs limit | note |",
             "|---|---|---|---|---|"]
    for name, entry in manifest["stages"].items():
        g = (entry.get("graphs") or {}).get(precision)
        if g is None:
            lines.append(f"| {name} | – | – | not made | |")
            continue
        trials = "<br>".join(f"{t['name']} ({t['nodes']} nodes): {'pass' if t['passed'] else 'FAIL'}, "
                             f"{t['worst']['output']} ({t['worst']['point']}) {t['worst']['measure']:.3g} vs "
                             f"{t['worst']['limit']}" + (f", {_ms_text(t['ms'])} ms" if t.get("ms") is not None else "")
                             for t in g.get("trials", [])) or "–"
        if g.get("timing"):
            trials += f"<br>fp32: {_ms_text(g['timing']['fp32_ms'])} ms ({g['timing']['point']})"
        lines.append(f"| {name} | {g['precision']} | {g['chosen']}, {g['island_nodes']} nodes | {trials} | "
                     f"{g.get('note', '')} |")
    return "\n".join(lines) + "\n"


def plan_graphs(manifest: dict, precision: str) -> dict[str, dict]:
    """``trt_plan.make_plan``'s ``graphs`` from the manifest's records."""
    out = {}
    for name, entry in manifest["stages"].items():
        g = (entry.get("graphs") or {}).get(precision)
        if g is None:
            raise ValueError(f"stage {name}: no {precision} graph; run `tts-export build --precision {precision}`")
        out[name] = {"onnx": g["onnx"], "sha256": g["files"][g["onnx"]], "precision": g["precision"],
                     "note": g.get("note", "")}
    return out


__all__ = ["make_precision_graphs", "plan_graphs", "report_markdown", "StageGraph", "Trial", "GATED"]
