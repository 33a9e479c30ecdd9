"""A GPU cost model on paper: per unit of work (one GPT decode step, one DiT Euler step, one second
of BigVGAN audio), the bytes the engines must move and the FLOPs they must do at each precision,
against an H100's and an H200's published rates: the predicted floor, and every place the
runtime's plan moves more than that floor, with its predicted cost.

It is a prediction, not a measurement: no GPU was used. Inputs are the reference worker's
``costs`` (benchmarks/worker.py: weight bytes, KV bytes per cached position and FLOPs counted by
``torch.utils.flop_counter`` on the stage adapters at the stage specs' shapes) and the runtime's own
cache-growth rule (``runtime/kvcache.py``). Simplifications, stated: fp16/bf16 halve every weight
and cache byte (fp32 islands are a few norms: ignored); attention is counted at 4·P·d FLOPs per
layer and row; a unit's floor is max(bytes / HBM bandwidth, FLOPs / tensor-core rate), i.e. perfect
overlap and no launch overhead — real kernels reach 60–80 % of it at best.
"""

from __future__ import annotations

# NVIDIA's datasheets, dense (no sparsity): H100 SXM5 80 GB and H200 SXM 141 GB have the same
# compute; the H200 has HBM3e at 4.8 TB/s. PCIe 5.0 x16: 64 GB/s each way.
GPUS = {
    "H100 SXM": {"hbm": 3.35e12, "fp16": 989e12, "bf16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H200 SXM": {"hbm": 4.8e12, "fp16": 989e12, "bf16": 989e12, "tf32": 494e12, "fp32": 67e12},
}
PCIE = 64e9
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
PRECISIONS = ("fp32", "fp16")


def _floor(nbytes: float, flops: float, gpu: dict, precision: str) -> tuple[float, str]:
    t_mem, t_math = nbytes / gpu["hbm"], flops / gpu[precision]
    return max(t_mem, t_math), ("memory" if t_mem >= t_math else "compute")


def _capacity_overhead(prefix: int, codes: int, first_extra: int, limit: int) -> float:
    """Mean (capacity − valid positions) over a segment's decode steps, by the runtime's rule."""
    from indextts_trt.runtime.kvcache import next_capacity

    cap = next_capacity(min(prefix + first_extra, limit), prefix + 1, limit)
    extra = 0
    for k in range(1, codes + 1):
        length = prefix + k - 1
        if length + 1 > cap:
            cap = next_capacity(length + 1, cap, limit)
        extra += cap - length
    return extra / max(codes, 1)


def predict(costs: dict, rows: int, codes: dict[str, int], vocab: int, cap_limit: int) -> dict:
    """{precision: {unit: {...}}} for the texts of ``codes`` (text -> codes of its segment)."""
    from indextts_trt.runtime.kvcache import FIRST_EXTRA

    out: dict = {}
    kv_pp32 = costs["kv_bytes_per_position"]  # fp32 bytes of one cached position, all rows and layers
    w32 = costs["gpt_step_weight_bytes"]
    for p in PRECISIONS:
        scale = BYTES[p] / 4
        units: dict = {}
        for text, n in codes.items():
            pos = costs["gpt_mean_cache_positions"][text]
            prefix = int(round(pos - n / 2))
            flops = 2 * (w32 / 4) * rows + pos * kv_pp32 / 2  # weights·rows + attention (4·P·d per layer/row)
            nbytes = (w32 + kv_pp32 * pos) * scale
            spare = _capacity_overhead(prefix, n, FIRST_EXTRA, cap_limit)
            units[f"gpt_decode[{text}]"] = {
                "unit": f"one decode step, {rows} rows, {pos:.0f} cached positions on average", "bytes": nbytes,
                "flops": flops, "floors": {g: _floor(nbytes, flops, spec, p) for g, spec in GPUS.items()},
                "excess": [
                    {"what": f"attention reads the cache's capacity, not its length ({spare:.0f} spare positions "
                             "on average: capacity grows ×1.25 as it fills)", "bytes": spare * kv_pp32 * scale, "link": "hbm"},
                    {"what": f"logits to the host for sampling ({rows}×{vocab} fp32)", "bytes": rows * vocab * 4,
                     "link": "pcie"},
                    {"what": "--ort-provider cuda without cuda-python only: the KV cache host→device and its new "
                             "entries back, every step (with it the cache stays on the device, as on TensorRT)", "bytes": kv_pp32 * scale * pos, "link": "pcie",
                     "ort_only": True},
                ]}
            dit = costs["dit_step_flops"][text]
            dbytes = costs.get("dit_weight_bytes", 0) * scale
            units[f"dit_step[{text}]"] = {
                "unit": "one Euler step (the CFG pair in one batch)", "bytes": dbytes, "flops": dit,
                "floors": {g: _floor(dbytes, dit, spec, p) for g, spec in GPUS.items()},
                "excess": [{"what": "none on TensorRT: prompt, style, condition and lengths bound once per segment, "
                                    "x fed back on the device; t and dt are 8 bytes", "bytes": 8, "link": "pcie"}]}
        voc = costs["bigvgan_flops_per_audio_second"]
        vbytes = costs.get("bigvgan_weight_bytes", 0) * scale
        units["bigvgan"] = {"unit": "one second of 22.05 kHz audio", "bytes": vbytes, "flops": voc,
                            "floors": {g: _floor(vbytes, voc, spec, p) for g, spec in GPUS.items()},
                            "excess": [{"what": "the waveform to the host (fp32)", "bytes": 22050 * 4, "link": "pcie"}]}
        out[p] = units
    return out


def _t(bytes_: float, link: str, gpu: dict) -> float:
    return bytes_ / (gpu["hbm"] if link == "hbm" else PCIE)


def markdown(pred: dict) -> str:
    lines = ["## GPU cost model (a prediction on paper, no GPU measured)", "",
             "Floor = max(bytes / HBM bandwidth, FLOPs / dense tensor-core rate) from NVIDIA's H100 SXM and H200 "
             "SXM datasheets; fp32 is counted at the CUDA-core fp32 rate (TF32 off, as the plan builds it). "
             "'Plan extra' is what the runtime moves beyond the floor, with its predicted time on an H200 "
             "(HBM 4.8 TB/s, PCIe 5.0 64 GB/s). See benchmarks/gpu_cost.py for the simplifications.", "",
             "| precision | unit | MB moved | GFLOP | floor H100 (ms) | floor H200 (ms) | bound | plan extra on H200 |",
             "|---|---|---|---|---|---|---|---|"]
    h200 = GPUS["H200 SXM"]
    for p, units in pred.items():
        for name, u in units.items():
            extra = "<br>".join(f"{e['what']}: {e['bytes'] / 1e6:.2f} MB, {1e3 * _t(e['bytes'], e['link'], h200):.3f} ms"
                                for e in u["excess"])
            f100, f200 = u["floors"]["H100 SXM"], u["floors"]["H200 SXM"]
            lines.append(f"| {p} | {name}: {u['unit']} | {u['bytes'] / 1e6:.1f} | {u['flops'] / 1e9:.2f} | "
                         f"{1e3 * f100[0]:.3f} | {1e3 * f200[0]:.3f} | {f200[1]} | {extra} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """``python -m indextts_trt.benchmarks.gpu_cost RESULTS.json [--engine-dir D] --out PREFIX``:
    the model for a committed latency report's work (its reference worker's costs; weight bytes
    missing there are read as the fp32 graph files' sizes in ``--engine-dir``)."""
    import argparse
    import json
    from pathlib import Path

    from indextts_trt.runtime.files import write_text_atomic
    from indextts_trt.runtime.variant import get_variant

    ap = argparse.ArgumentParser(prog="gpu_cost")
    ap.add_argument("results", type=Path)
    ap.add_argument("--engine-dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    doc = json.loads(a.results.read_text())
    costs = dict(doc["raw"]["torch"]["costs"])
    for stage, key in (("dit_step", "dit_weight_bytes"), ("bigvgan", "bigvgan_weight_bytes")):
        if key not in costs and a.engine_dir:
            costs[key] = sum((a.engine_dir / f).stat().st_size for f in a.engine_dir.glob(f"{stage}.onnx*"))
    variant = get_variant("indextts-2")
    cfg = variant.load_config(a.engine_dir / "config.yaml") if a.engine_dir else None
    vocab = cfg.gpt.number_mel_codes if cfg else 8194
    cap = variant.stage_specs(cfg)["gpt_decode"].dim_map["CAP"].max if cfg else 2048
    work = doc["workload"]
    codes = {}
    for t in work["texts"]:  # one text per code count: the figures depend on lengths only
        if t["codes"] not in codes.values():
            codes[t["name"]] = t["codes"]
    pred = predict(costs, work["num_beams"], codes, vocab, cap)
    src = f"Work: {a.results} ({doc.get('checkpoints_size', '?')} checkpoints), {work['num_beams']} beams."
    write_text_atomic(a.out.with_suffix(".md"), markdown(pred).replace("\n\n", f"\n\n{src}\n\n", 1))
    write_text_atomic(a.out.with_suffix(".json"), json.dumps({"inputs": costs, "gpus": GPUS, "pcie": PCIE,
                                                              "prediction": pred}, indent=1))
    print(f"wrote {a.out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()


__all__ = ["GPUS", "predict", "markdown"]
