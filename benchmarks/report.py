"""Turns the workers' raw runs into figures, a Markdown report and a bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# every variant's stage timers (IndexTTS-2 has the latent pass, IndexTTS-2.5 the codec decoder; the
# other's column is 0)
STAGES = ("text", "conditioning", "gpt_generate", "gpt_latents", "codec_decode", "s2mel", "bigvgan")
LABELS = {"torch": "PyTorch reference (eager fp32)", "ort": "ONNX Runtime fp32"}
# per-unit figures compared with a peer: the stage's cost per unit of work it does
UNITS = {"gpt_generate_ms_per_code": "GPT ms per code", "gpt_decode_ms_per_step": "decode ms/step",
         "dit_ms_per_step": "DiT ms/step", "bigvgan_ms_per_audio_second": "BigVGAN ms per audio s"}


def label(key: str, doc: dict | None = None) -> str:
    """A column's name in the report: ``ort-int8`` → ONNX Runtime int8; a peer by its own label."""
    peer = (doc or {}).get("peer") or {}
    if key == peer.get("name"):
        return peer.get("label", key)
    return LABELS.get(key) or (f"ONNX Runtime {key[4:]}" if key.startswith("ort-") else key)


def _stat(values) -> dict:
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))}


def summarize(raw: dict, limits: dict) -> dict:
    """Per backend and text: median/p90 per stage, the derived figures, the ratio to the reference
    and the achieved fraction of the machine's limits (where the reference worker gave costs)."""
    costs = raw.get("torch", {}).get("costs")
    out: dict = {}
    for backend, res in raw.items():
        texts = {}
        for name, runs in res["runs"].items():
            st = {k: _stat([r.get(k, 0.0) for r in runs]) for k in (*STAGES, "total")}
            med = lambda k: float(np.median([r.get(k, 0.0) for r in runs]))  # noqa: E731
            steps = max(med("gpt_decode_step_calls"), 1)
            codes = int(runs[0].get("codes", 0)) or None
            audio = med("audio_seconds")
            fig = {
                "gpt_prefill_ms": 1e3 * med("gpt_prefill"),
                "gpt_decode_ms_per_step": 1e3 * med("gpt_decode_step") / steps,
                "gpt_decode_steps": int(steps),
                "codes_per_second": steps / max(med("gpt_generate"), 1e-12),
                "dit_ms_per_step": 1e3 * med("dit_step") / max(med("dit_step_calls"), 1),
                "bigvgan_ms_per_audio_second": 1e3 * med("bigvgan") / max(audio, 1e-12),
                "audio_seconds": audio,
                "rtf": med("total") / max(audio, 1e-12),
                # per code and per second of audio: the two ways to compare variants of different code rates
                "gpt_generate_ms_per_code": 1e3 * med("gpt_generate") / max(codes or 0, 1),
                "gpt_generate_seconds_per_audio_second": med("gpt_generate") / max(audio, 1e-12),
            }
            if costs:
                fig.update(_fractions(fig, costs, name, audio, limits))
            texts[name] = {"stages": st, "figures": fig, "codes": codes}
        out[backend] = {"texts": texts, "peak_rss_bytes": res["peak_rss_bytes"], "load_seconds": res["load_seconds"]}
        if "ttfa" in res:
            out[backend]["ttfa"] = {**res["ttfa"], **_stat(res["ttfa"]["seconds"])}
    if "torch" in out:
        ref = out["torch"]["texts"]
        for backend, b in out.items():
            for name, t in b["texts"].items():
                t["speedup_vs_reference"] = {
                    k: ref[name]["stages"][k]["median"] / max(t["stages"][k]["median"], 1e-12)
                    for k in (*STAGES, "total") if ref[name]["stages"][k]["median"] > 0}
    for p in [k for k, res in raw.items() if res.get("peer")]:  # the peer's time over ours: > 1, ours is faster
        theirs = out[p]["texts"]
        for backend, b in out.items():
            for name, t in b["texts"].items():
                if backend == p or name not in theirs:
                    continue
                t["ratio_vs_peer"] = _ratios(theirs[name]["stages"], t["stages"], (*STAGES, "total"), "median")
                t["unit_ratio_vs_peer"] = _ratios(theirs[name]["figures"], t["figures"], UNITS)
    return out


def _ratios(theirs: dict, ours: dict, keys, field: str | None = None) -> dict:
    get = (lambda d, k: d[k][field]) if field else (lambda d, k: d[k])  # noqa: E731
    return {k: get(theirs, k) / get(ours, k) for k in keys if get(theirs, k) > 0 and get(ours, k) > 0}


def _fractions(fig: dict, costs: dict, text: str, audio: float, limits: dict) -> dict:
    bw, mm = limits["memory_bandwidth_bytes_per_s"], limits["matmul_flops_per_s"]
    pos = costs["gpt_mean_cache_positions"][text]
    step_bytes = costs["gpt_step_weight_bytes"] + costs["kv_bytes_per_position"] * pos
    gpt_ms = 1e3 * step_bytes / bw
    dit_ms = 1e3 * costs["dit_step_flops"][text] / mm
    voc_ms = 1e3 * costs["bigvgan_flops_per_audio_second"] / mm
    return {"limit_gpt_decode_ms_per_step": gpt_ms, "fraction_gpt_decode": gpt_ms / max(fig["gpt_decode_ms_per_step"], 1e-12),
            "limit_dit_ms_per_step": dit_ms, "fraction_dit": dit_ms / max(fig["dit_ms_per_step"], 1e-12),
            "limit_bigvgan_ms_per_audio_second": voc_ms,
            "fraction_bigvgan": voc_ms / max(fig["bigvgan_ms_per_audio_second"], 1e-12)}


def _f(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def _engines_line(doc: dict) -> str:
    sha = doc.get("manifest_sha256", "")[:16]
    if doc.get("engine_dir"):
        return f"Engines: {doc['engine_dir']} (manifest sha256 {sha})."
    if sha:
        return f"Manifest sha256 {sha}."
    return "No engines (PyTorch reference only)." if "torch" in doc.get("raw", {}) else "No engines of ours."


def markdown(doc: dict) -> str:
    s, w, lim = doc["summary"], doc["workload"], doc["limits"]
    backends = list(s)
    lines = [f"# Latency benchmark: {doc['title']}", "",
             f"Machine: {doc['machine']['cpu']} ({doc['machine']['cores']} cores, "
             f"{doc['machine']['memory_gib']:.0f} GiB), {doc['machine']['gpu'] or 'no GPU'}. "
             f"Date {doc['date']}. Checkpoints: {doc['checkpoints_size']} ({doc['checkpoints_note']}).",
             f"Versions: {', '.join(f'{k} {v}' for k, v in doc['versions'].items())}. " + _engines_line(doc), "",
             "**Fixed work.** Every backend runs the same texts with the same synthetic 3 s prompt, "
             f"{_beams(w['num_beams'])} (top-k {w['top_k']}, top-p {w['top_p']}, temperature {w['temperature']}), "
             f"{w['diffusion_steps']} CFM steps, CFG {w['cfg_rate']}, and a **fixed number of codes per text** "
             "(the stop code is banned until then, and generation ends there), so random weights cost what "
             "real ones would for that much speech. "
             f"Measured runs per text: {w['runs']}, after {w['warmup']} warm-up run(s) of the first text; figures are "
             f"medians (p90 in brackets). {lim['threads']} threads for every backend.", ""]
    if doc.get("caveats"):
        lines += ["**Caveats.** " + " ".join(doc["caveats"]), ""]
    lines += ["**Columns.** " + " ".join(_column_line(doc, b) for b in backends), ""]
    peer = (doc.get("peer") or {}).get("name")
    lines += ["## Per-stage time (seconds)", "",
              "speedup: the PyTorch reference's total time over the column's" + (
                  f"; vs peer: {label(peer, doc)}'s total time over the column's (> 1: the column is faster)"
                  if peer else "") + ".", ""]
    hdr = "| text | codes | backend | " + " | ".join(STAGES) + " | total | RTF | speedup |" + (" vs peer |" if peer else "")
    lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for name in s[backends[0]]["texts"]:
        for b in backends:
            t = s[b]["texts"][name]
            cells = [f"{t['stages'][k]['median']:.3f} ({t['stages'][k]['p90']:.3f})" for k in (*STAGES, "total")]
            sp = t.get("speedup_vs_reference", {}).get("total")
            vs = (f" {_f(t.get('ratio_vs_peer', {}).get('total'), 2)}× |" if b != peer else " – |") if peer else ""
            lines.append(f"| {name} | {t['codes']} | {label(b, doc)} | " + " | ".join(cells)
                         + f" | {t['figures']['rtf']:.2f} | {_f(sp, 2)}{'×' if sp is not None else ''} |" + vs)
    if peer:
        lines += _peer_section(doc)
    lines += ["", "## Unit figures and the physical limit", "",
              f"Limits measured on this machine: memory bandwidth {lim['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s "
              f"(parallel copy, read + write), float32 GEMM {lim['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s. "
              "GPT decode step limit = (weights it multiplies with + KV cache it reads, fp32) / bandwidth; DiT step "
              "and BigVGAN limits = matmul/conv FLOPs (torch's counter) / GEMM rate. Fraction = limit / measured. The "
              "limits are fp32's: int8 weights move a quarter of the bytes and int8 products run faster than the "
              "fp32 GEMM rate, so an int8 column's fraction can pass 100 %.", "",
              "| text | backend | prefill ms | decode ms/step (limit, fraction) | codes/s | GPT ms per code "
              "| GPT s per audio s | DiT ms/step (limit, fraction) | BigVGAN ms per audio s (limit, fraction) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name in s[backends[0]]["texts"]:
        for b in backends:
            f = s[b]["texts"][name]["figures"]
            lim_cell = lambda v, l, fr: f"{v:.3g}" + (f" ({f[l]:.3g}, {f[fr]:.1%})" if l in f else "")  # noqa: E731
            lines.append(f"| {name} | {label(b, doc)} | {f['gpt_prefill_ms']:.1f} | "
                         f"{lim_cell(f['gpt_decode_ms_per_step'], 'limit_gpt_decode_ms_per_step', 'fraction_gpt_decode')} | "
                         f"{f['codes_per_second']:.1f} | {f['gpt_generate_ms_per_code']:.3g} | "
                         f"{f['gpt_generate_seconds_per_audio_second']:.3g} | "
                         f"{lim_cell(f['dit_ms_per_step'], 'limit_dit_ms_per_step', 'fraction_dit')} | "
                         f"{lim_cell(f['bigvgan_ms_per_audio_second'], 'limit_bigvgan_ms_per_audio_second', 'fraction_bigvgan')} |")
    lines += ["", "## Memory and streaming", "", "| backend | peak host RSS (GiB) | models load (s) | time to first audio (s) |",
              "|---|---|---|---|"]
    for b in backends:
        tt = s[b].get("ttfa")
        ttfa = (f"{tt['median']:.2f} ({tt['p90']:.2f}), {tt['text']}, code chunks {tt['chunk'][0]}/{tt['chunk'][1]}"
                if tt else "– (no streaming API)")
        lines.append(f"| {label(b, doc)} | {s[b]['peak_rss_bytes'] / 2**30:.2f} | {s[b]['load_seconds']:.1f} | {ttfa} |")
    if doc.get("plot"):
        lines += ["", f"![per-stage time]({doc['plot']})"]
    lines += ["", "Settings and raw runs: the JSON file next to this report.", ""]
    return "\n".join(lines)


def _beams(n: int) -> str:
    return "1 beam (one sampled sequence)" if n == 1 else f"{n} beams"


def _column_line(doc: dict, key: str) -> str:
    """What a column ran: its backend and the precision of its stages (a reduced-precision stage
    whose gate failed runs fp32: named here)."""
    raw = doc["raw"][key]
    if raw.get("peer"):
        g = raw.get("graph_precisions", {})
        int8 = [k for k, v in g.items() if v == "int8"]
        return (f"{label(key, doc)}: its own ONNX graphs, int8 {', '.join(int8) or 'none'}; fp32 the rest; "
                f"{_beams(raw.get('num_beams', 1))}.")
    stages = raw.get("stage_precisions")
    if not stages:
        return f"{label(key, doc)}: fp32."
    want = raw.get("precision", "fp32")
    kept = sorted(k for k, v in stages.items() if v != want)
    return (f"{label(key, doc)}: {want} in {len(stages) - len(kept)} of {len(stages)} stages"
            + (f" (fp32: {', '.join(kept)})." if kept and want != "fp32" else "."))


def peer_differences(doc: dict) -> list[str]:
    """What the peer's column computes differently from ours, one line each, from the run's own
    settings (beams, steps, threads, its graphs' precision)."""
    w, p = doc["workload"], doc["peer"]
    g = p.get("graph_precisions", {})
    int8 = [k for k, v in g.items() if v == "int8"] or ["none"]
    fp32 = [k for k, v in g.items() if v != "int8"] or ["none"]
    beams = w["num_beams"]
    return [
        f"**Beams.** Ours: {_beams(beams)}; {p['label']}: 1 sampled sequence (its only mode). "
        + ("Equal work." if beams == 1 else f"Our GPT decode steps carry {beams} rows of work and KV cache; "
           "run with `--beams 1` for equal work."),
        f"**Codes and steps.** Equal: the same forced code count per text (the stop code banned until then, both), "
        f"{w['diffusion_steps']} CFM steps with the CFG batch of 2 (cfg {w['cfg_rate']}; the port's own default is "
        f"10 steps), top-k {w['top_k']}, top-p {w['top_p']}, temperature {w['temperature']}, repetition penalty "
        f"{w['repetition_penalty']}, the same 3 s prompt, {doc['limits']['threads']} threads.",
        f"**Precision.** Ours: fp32 graphs, or the column's precision where its gate passed (see Columns). "
        f"The port: int8 {', '.join(int8)}; fp32 {', '.join(fp32)}. Its int8 is ONNX Runtime's dynamic "
        "quantization (`quantize_dynamic`, per-channel int8 weights, activations quantized at run time, "
        "no parity gate); its loader takes DiT and BigVGAN fp32 when both files exist (its released folder has them "
        "fp32). Each graph's precision above is read from the file it loaded.",
        "**Work one side does and the other skips.** The port normalizes no text (its text stage is tokenization "
        "only); it runs the GPT's conditioning encoders inside its first GPT step and again in its latent pass, per "
        "segment (ours: once per prompt, in conditioning); it passes the whole KV cache in and out of each decode "
        "step (a copy that grows with the cache); it samples on the host in float64 numpy. Both cache a prompt's "
        "conditioning after the warm-up run.",
    ]


def _peer_section(doc: dict) -> list[str]:
    s, p = doc["summary"], doc["peer"]
    ours = [b for b in s if b != p["name"]]
    lines = ["", f"## Against {p['label']}", "",
             f"The port ran in its own environment ({p['python']}; ONNX Runtime {p.get('onnxruntime')}) on its model "
             f"folder {p['models']}, converted from the same checkpoints by its own exporter. Ratios are its median "
             "time over ours (> 1: ours is faster), per stage and per unit of work.", ""]
    lines += [f"- {d}" for d in peer_differences(doc)]
    if not ours:
        return lines
    lines.append("")
    hdr = "| text | ours | " + " | ".join((*STAGES, "total")) + " | " + " | ".join(UNITS.values()) + " |"
    lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for name in s[p["name"]]["texts"]:
        for b in ours:
            t = s[b]["texts"].get(name, {})
            r, u = t.get("ratio_vs_peer", {}), t.get("unit_ratio_vs_peer", {})
            cells = [f"{r[k]:.2f}×" if k in r else "–" for k in (*STAGES, "total")]
            cells += [f"{u[k]:.2f}×" if k in u else "–" for k in UNITS]
            lines.append(f"| {name} | {label(b, doc)} | " + " | ".join(cells) + " |")
    return lines


def plot(doc: dict, path: Path) -> bool:
    """Grouped bars: per stage, the sum over texts of the median seconds, one bar per backend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    s = doc["summary"]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(STAGES))
    width = 0.8 / max(len(s), 1)
    for i, (b, r) in enumerate(s.items()):
        vals = [sum(t["stages"][k]["median"] for t in r["texts"].values()) for k in STAGES]
        ax.bar(x + i * width, vals, width, label=label(b, doc))
    ax.set_xticks(x + width * (len(s) - 1) / 2, STAGES, rotation=20)
    ax.set_ylabel("seconds (sum of medians over the texts)")
    ax.set_title(doc["title"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


__all__ = ["summarize", "markdown", "plot", "label", "peer_differences"]
