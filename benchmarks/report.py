"""Turns the workers' raw runs into figures, a Markdown report and a bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# every variant's stage timers (IndexTTS-2 has the latent pass, IndexTTS-2.5 the codec decoder; the
# other's column is 0)
STAGES = ("text", "conditioning", "gpt_generate", "gpt_latents", "codec_decode", "s2mel", "bigvgan")
LABELS = {"torch": "PyTorch reference (eager fp32)", "ort": "ONNX Runtime"}


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
    return out


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
    return f"Manifest sha256 {sha}." if sha else "No engines (PyTorch reference only)."


def markdown(doc: dict) -> str:
    s, w, lim = doc["summary"], doc["workload"], doc["limits"]
    backends = list(s)
    lines = [f"# Latency benchmark: {doc['title']}", "",
             f"Machine: {doc['machine']['cpu']} ({doc['machine']['cores']} cores, "
             f"{doc['machine']['memory_gib']:.0f} GiB), {doc['machine']['gpu'] or 'no GPU'}. "
             f"Date {doc['date']}. Checkpoints: {doc['checkpoints_size']} ({doc['checkpoints_note']}).",
             f"Versions: {', '.join(f'{k} {v}' for k, v in doc['versions'].items())}. " + _engines_line(doc), "",
             "**Fixed work.** Every backend runs the same texts with the same synthetic 3 s prompt, "
             f"{w['num_beams']} beams (top-k {w['top_k']}, top-p {w['top_p']}, temperature {w['temperature']}), "
             f"{w['diffusion_steps']} CFM steps, CFG {w['cfg_rate']}, and a **fixed number of codes per text** "
             "(the stop code is banned until then, and generation ends there), so random weights cost what "
             "real ones would for that much speech. "
             f"Measured runs per text: {w['runs']}, after {w['warmup']} warm-up run(s) of the first text; figures are "
             f"medians (p90 in brackets). {lim['threads']} threads for every backend.", ""]
    if doc.get("caveats"):
        lines += ["**Caveats.** " + " ".join(doc["caveats"]), ""]
    lines += ["## Per-stage time (seconds)", ""]
    hdr = "| text | codes | backend | " + " | ".join(STAGES) + " | total | RTF | speedup |"
    lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for name in s[backends[0]]["texts"]:
        for b in backends:
            t = s[b]["texts"][name]
            cells = [f"{t['stages'][k]['median']:.3f} ({t['stages'][k]['p90']:.3f})" for k in (*STAGES, "total")]
            sp = t.get("speedup_vs_reference", {}).get("total")
            lines.append(f"| {name} | {t['codes']} | {LABELS.get(b, b)} | " + " | ".join(cells)
                         + f" | {t['figures']['rtf']:.2f} | {_f(sp, 2)}× |")
    lines += ["", "## Unit figures and the physical limit", "",
              f"Limits measured on this machine: memory bandwidth {lim['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s "
              f"(parallel copy, read + write), float32 GEMM {lim['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s. "
              "GPT decode step limit = (weights it multiplies with + KV cache it reads, fp32) / bandwidth; DiT step "
              "and BigVGAN limits = matmul/conv FLOPs (torch's counter) / GEMM rate. Fraction = limit / measured.", "",
              "| text | backend | prefill ms | decode ms/step (limit, fraction) | codes/s | GPT ms per code "
              "| GPT s per audio s | DiT ms/step (limit, fraction) | BigVGAN ms per audio s (limit, fraction) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name in s[backends[0]]["texts"]:
        for b in backends:
            f = s[b]["texts"][name]["figures"]
            lim_cell = lambda v, l, fr: f"{v:.3g}" + (f" ({f[l]:.3g}, {f[fr]:.1%})" if l in f else "")  # noqa: E731
            lines.append(f"| {name} | {LABELS.get(b, b)} | {f['gpt_prefill_ms']:.1f} | "
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
        lines.append(f"| {LABELS.get(b, b)} | {s[b]['peak_rss_bytes'] / 2**30:.2f} | {s[b]['load_seconds']:.1f} | {ttfa} |")
    if doc.get("plot"):
        lines += ["", f"![per-stage time]({doc['plot']})"]
    lines += ["", "Settings and raw runs: the JSON file next to this report.", ""]
    return "\n".join(lines)


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
        ax.bar(x + i * width, vals, width, label=LABELS.get(b, b))
    ax.set_xticks(x + width * (len(s) - 1) / 2, STAGES, rotation=20)
    ax.set_ylabel("seconds (sum of medians over the texts)")
    ax.set_title(doc["title"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


__all__ = ["summarize", "markdown", "plot"]
