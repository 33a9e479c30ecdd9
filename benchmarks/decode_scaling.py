"""How a GPT decode step's cost grows with the cache: ms/step at several cached code counts, beside
what the step must read (its weights once, plus every cache position it attends to) over the
machine's measured memory bandwidth.

The step is the engine directory's ``gpt_decode`` graph run by the runtime's own runner, on the
cache the runtime's decode loop would hold after that many codes: a prompt of ``--prompt``
positions (conditioning rows + text + start code), then the codes, in a ``HostKVCache`` grown the
way the loop grows it (``kvcache.next_capacity``). The attention reads every position up to the
cache's capacity (masked beyond each row's length), so capacity — not the longest segment the
limits allow — is what a step reads; the ``all positions`` row shows the other design for contrast
(a cache allocated at the spec's longest segment, as the first design did).

    python -m indextts_trt.benchmarks.decode_scaling --engine-dir ENGINES --out benchmarks/results \
        --name decode-scaling-full [--precision fp32 --precision int8] [--rows 1 --rows 3]

Writes NAME.json, NAME.md and NAME.png. "Flat" is judged as the issue states it: ms/step at the
largest code count over ms/step at the smallest; beside it, the same ratio of the physical limit,
which no formulation can beat (the cache bytes a step must read grow with the codes).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import typer

from indextts_trt.runtime.files import write_bytes_atomic
from indextts_trt.runtime.kvcache import FIRST_EXTRA, GROWTH, next_capacity

from .limits import memory_bandwidth

CODES = (40, 100, 200, 400, 700, 1000)


def loop_capacity(prompt: int, needed: int, limit: int) -> int:
    """The capacity the runtime's decode loop holds once ``needed`` positions exist (the same
    first allocation and growth rule as ``indextts2.pipeline.generate_steps``)."""
    cap = next_capacity(min(prompt + FIRST_EXTRA, limit), prompt + 1, limit)
    for n in range(prompt + 1, needed + 1):
        if n > cap:
            cap = next_capacity(n, cap, limit)
    return cap


def streamed_weight_bytes(onnx_path: Path) -> int:
    """Bytes of the initializers a step reads whole: every initializer except tables only gathered
    from (the code and position embeddings: a step reads one row of each)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    total = 0
    for init in model.graph.initializer:
        if consumers.get(init.name, set()) <= {"Gather"} and init.name in consumers:
            continue
        size = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        total += int(np.prod(init.dims, dtype=np.int64)) * size
    return total


def measure_step(runner, rows: int, prompt: int, codes: int, capacity: int, steps: int, rng) -> float:
    """Median seconds of one decode step with ``rows`` rows after ``codes`` codes (``prompt + codes``
    valid positions; the step writes its entry at that index)."""
    spec = runner.spec
    vocab = spec.input("mel_ids").high or 2
    cache = runner.new_cache(rows, capacity)
    try:
        cache.array[...] = rng.standard_normal(cache.array.shape, np.float32).astype(cache.dtype) * 0.3
        feed = {"mel_ids": rng.integers(0, vocab, (rows, 1), dtype=np.int64),
                "mel_pos": np.full((rows, 1), codes + 1, np.int64),
                "cache_len": np.full((rows,), prompt + codes, np.int64)}  # this step's entry goes there
        times = []
        for i in range(steps + 2):  # two warm-up steps (allocator, first-run kernel choice)
            t0 = time.perf_counter()
            runner.run(feed, cache=cache, fetch=("logits",))
            if i >= 2:
                times.append(time.perf_counter() - t0)
        return float(np.median(times))
    finally:
        cache.close()


def run(engine_dir: Path, precisions: tuple[str, ...], rows_list: tuple[int, ...], codes_list: tuple[int, ...],
        prompt: int, threads: int, steps: int, log=print) -> dict:
    from indextts_trt.runtime.pipeline import open_pipeline

    bandwidth = memory_bandwidth(threads)
    log(f"memory bandwidth (read + write, {threads} threads): {bandwidth / 1e9:.1f} GB/s")
    rng = np.random.default_rng(0)
    results = []
    for precision in precisions:
        pipe = open_pipeline(engine_dir, backend="ort", threads=threads, precision=precision)
        try:
            runner = pipe.stage("gpt_decode")
            spec = runner.spec
            limit = spec.dim_map["CAP"].max
            if prompt + max(codes_list) + 1 > limit:
                raise typer.BadParameter(f"--prompt {prompt} + {max(codes_list)} codes exceed the decode cache's "
                                         f"{limit} positions")
            weights = streamed_weight_bytes(runner.path)
            probe = runner.new_cache(1, 1)  # one row, one position: a position's bytes over every part
            per_pos = probe.array.nbytes
            probe.close()
            for rows in rows_list:
                cases = [(c, loop_capacity(prompt, prompt + c + 1, limit), "grown") for c in codes_list]
                cases.append((codes_list[0], limit, "all positions"))
                for codes, cap, how in cases:
                    sec = measure_step(runner, rows, prompt, codes, cap, steps, rng)
                    need = weights + rows * cap * per_pos
                    results.append({"precision": pipe.stage_precision("gpt_decode"), "asked": precision,
                                    "rows": rows, "codes": codes, "capacity": cap, "cache": how,
                                    "ms_per_step": 1e3 * sec, "bytes_read": need,
                                    "limit_ms": 1e3 * need / bandwidth, "weight_bytes": weights})
                    log(f"{precision} rows {rows} codes {codes:5d} capacity {cap:5d} ({how}): {1e3 * sec:7.1f} ms "
                        f"(limit {1e3 * need / bandwidth:6.1f} ms)")
        finally:
            pipe.close()
    return {"engine_dir": str(engine_dir), "prompt_positions": prompt, "threads": threads, "steps": steps,
            "memory_bandwidth_bytes_per_s": bandwidth, "results": results,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "flatness": flatness(results)}


def flatness(results: list[dict]) -> list[dict]:
    """Per precision and row count: the largest code count's ms/step (and limit) over the smallest's."""
    out = []
    for key in sorted({(r["asked"], r["rows"]) for r in results}):
        grown = sorted((r for r in results if (r["asked"], r["rows"]) == key and r["cache"] == "grown"),
                       key=lambda r: r["codes"])
        if len(grown) < 2:
            continue
        lo, hi = grown[0], grown[-1]
        out.append({"precision": key[0], "rows": key[1], "codes": [lo["codes"], hi["codes"]],
                    "growth": hi["ms_per_step"] / lo["ms_per_step"] - 1,
                    "limit_growth": hi["limit_ms"] / lo["limit_ms"] - 1,
                    "fraction": [lo["limit_ms"] / lo["ms_per_step"], hi["limit_ms"] / hi["ms_per_step"]]})
    return out


def markdown(doc: dict) -> str:
    bw = doc["memory_bandwidth_bytes_per_s"] / 1e9
    lines = [f"# GPT decode step against the cache length ({Path(doc['engine_dir']).name})", "",
             f"Machine: {doc['machine']['cpu']} ({doc['machine']['cores']} cores), {doc['threads']} threads, "
             f"ONNX Runtime CPU. Date {doc['date']}. Median of {doc['steps']} steps after 2 warm-up steps. "
             f"Prompt: {doc['prompt_positions']} cached positions before the codes. Memory bandwidth {bw:.1f} GB/s "
             "(parallel copy, read + write).", "",
             "Limit = (the weights a step streams + rows × capacity × the cache's bytes per position) / bandwidth. "
             f"*grown*: the capacity the runtime's loop holds after that many codes (growing ×{GROWTH}); "
             "*all positions*: a cache allocated at the longest segment the spec allows, which every step would read.",
             "",
             "| graph | rows | codes | capacity | cache | ms/step | limit ms | fraction of limit |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        lines.append(f"| {r['asked']} ({r['precision']}) | {r['rows']} | {r['codes']} | {r['capacity']} | {r['cache']} | "
                     f"{r['ms_per_step']:.1f} | {r['limit_ms']:.1f} | {r['limit_ms'] / r['ms_per_step']:.0%} |")
    lines += ["", "## Flatness", "", "| graph | rows | codes | ms/step growth | limit growth | fraction of limit |",
              "|---|---|---|---|---|---|"]
    for f in doc["flatness"]:
        lines.append(f"| {f['precision']} | {f['rows']} | {f['codes'][0]} → {f['codes'][1]} | {f['growth']:+.1%} | "
                     f"{f['limit_growth']:+.1%} | {f['fraction'][0]:.0%} → {f['fraction'][1]:.0%} |")
    if doc.get("plot"):
        lines += ["", f"![decode step against cache length]({doc['plot']})"]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in sorted({(r["asked"], r["rows"]) for r in doc["results"]}):
        rs = sorted((r for r in doc["results"] if (r["asked"], r["rows"]) == key and r["cache"] == "grown"),
                    key=lambda r: r["codes"])
        line, = ax.plot([r["codes"] for r in rs], [r["ms_per_step"] for r in rs], "o-", label=f"{key[0]}, {key[1]} rows")
        ax.plot([r["codes"] for r in rs], [r["limit_ms"] for r in rs], ":", color=line.get_color())
    ax.set_xlabel("cached codes")
    ax.set_ylabel("ms per decode step")
    ax.set_ylim(bottom=0)
    ax.set_title("GPT decode step (solid) and its bandwidth limit (dotted)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


app = typer.Typer(add_completion=False)


@app.command()
def main(engine_dir: Path = typer.Option(..., "--engine-dir", help="built engine directory (tts-export build)"),
         out: Path = typer.Option(Path("out/bench"), "--out", help="report folder"),
         name: str = typer.Option("decode-scaling", "--name", help="report file stem"),
         precision: list[str] = typer.Option(["fp32"], "--precision", help="graphs to measure (repeatable)"),
         rows: list[int] = typer.Option([3, 1], "--rows", help="decode rows (beams; repeatable)"),
         codes: str = typer.Option(",".join(map(str, CODES)), "--codes", help="cached code counts, comma-separated"),
         prompt: int = typer.Option(110, "--prompt", help="cached positions before the codes (conditioning + text "
                                    "+ start)"),
         threads: int = typer.Option(2, "--threads", help="ONNX Runtime intra-op threads"),
         steps: int = typer.Option(10, "--steps", help="measured steps per case")) -> None:
    """Measure ms per decode step against the cache length; write NAME.json, .md and .png."""
    code_list = tuple(int(c) for c in codes.split(",") if c.strip())
    doc = run(engine_dir, tuple(precision), tuple(rows), code_list, prompt, threads, steps,
              log=lambda m: typer.echo(m, err=True))
    with tempfile.TemporaryDirectory() as t:
        if plot(doc, Path(t) / "p.png"):
            write_bytes_atomic(out / f"{name}.png", (Path(t) / "p.png").read_bytes())
            doc["plot"] = f"{name}.png"
    write_bytes_atomic(out / f"{name}.json", json.dumps(doc, indent=1).encode())
    write_bytes_atomic(out / f"{name}.md", markdown(doc).encode())
    typer.echo(f"wrote {out / name}.json, .md, .png")


if __name__ == "__main__":
    app()
