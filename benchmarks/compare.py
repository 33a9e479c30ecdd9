"""Two model variants' latency reports side by side (e.g. IndexTTS-2 and IndexTTS-2.5).

``python -m indextts_trt.benchmarks.compare A.json B.json --out DIR --name NAME`` writes NAME.md and
NAME.json. Each input is a ``tts-export bench`` report; the two must come from the same machine with
the same fixed work (texts, decoding and S2Mel settings, threads; the number of runs may differ, it
only sets how robust each median is): the workload makes each
variant generate the codes of the same seconds of speech (``Workload.codes_for``), so per text the
figures compare like for like. Per code and per second of audio are both given: a variant at half
the code rate does half the decode steps for the same audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from indextts_trt.runtime.files import write_bytes_atomic

from .report import label

# workload fields that must agree (``extra`` holds per-run paths; ``texts`` are checked by name and text)
SAME = ("num_beams", "top_k", "top_p", "temperature", "repetition_penalty", "diffusion_steps", "cfg_rate", "seed",
        "threads", "prompt_seconds", "prompt_seed", "stream_chunk")


def variant_of(doc: dict) -> str:
    names = {r.get("variant", "indextts-2") for r in doc["raw"].values()}  # reports before 2.5 were IndexTTS-2's
    if len(names) != 1:
        raise ValueError(f"report {doc.get('title')!r} mixes variants {sorted(names)}")
    return names.pop()


def check_comparable(a: dict, b: dict) -> None:
    """Raise ValueError naming the first difference that makes the two reports incomparable."""
    wa, wb = a["workload"], b["workload"]
    for k in SAME:
        if wa.get(k) != wb.get(k):
            raise ValueError(f"the reports differ in workload.{k}: {wa.get(k)!r} vs {wb.get(k)!r}")
    ta = [(t["name"], t["text"], t["codes"]) for t in wa["texts"]]
    tb = [(t["name"], t["text"], t["codes"]) for t in wb["texts"]]
    if ta != tb:
        raise ValueError("the reports ran different texts")
    if a["machine"].get("cpu") != b["machine"].get("cpu") or a["machine"].get("gpu") != b["machine"].get("gpu"):
        raise ValueError(f"the reports come from different machines: {a['machine'].get('cpu')} vs "
                         f"{b['machine'].get('cpu')}")


def compare(a: dict, b: dict) -> dict:
    """Per text and backend (those both reports ran): each variant's figures, and b's over a's."""
    check_comparable(a, b)
    va, vb = variant_of(a), variant_of(b)
    if va == vb:
        raise ValueError(f"both reports are of {va}")
    backends = [k for k in a["summary"] if k in b["summary"]]
    speech = {t["name"]: t["codes"] / 50.0 for t in a["workload"]["texts"]}  # Text.codes counts 50 per second
    rows, ratios = [], []
    for name in a["summary"][backends[0]]["texts"] if backends else []:
        for be in backends:
            pair = []
            for v, doc in ((va, a), (vb, b)):
                t = doc["summary"][be]["texts"][name]
                med = {k: x["median"] for k, x in t["stages"].items()}
                f = t["figures"]
                pair.append({"text": name, "speech_seconds": speech[name], "backend": be, "variant": v,
                             "codes": t["codes"], "gpt_generate_s": med["gpt_generate"],
                             "gpt_ms_per_code": f["gpt_generate_ms_per_code"],
                             "gpt_s_per_audio_s": f["gpt_generate_seconds_per_audio_second"],
                             "s2mel_s": med["s2mel"], "bigvgan_s": med["bigvgan"], "total_s": med["total"],
                             "audio_s": f["audio_seconds"], "rtf": f["rtf"]})
            rows += pair
            ratios.append({"text": name, "backend": be, **{k: pair[1][k] / max(pair[0][k], 1e-12) for k in
                                                          ("gpt_generate_s", "gpt_ms_per_code", "total_s", "rtf")}})
    return {"schema": 1, "variants": [va, vb], "reports": [a.get("title"), b.get("title")],
            "dates": [a.get("date"), b.get("date")], "runs": [a["workload"]["runs"], b["workload"]["runs"]],
            "machine": a["machine"], "workload": a["workload"], "rows": rows, "ratios": ratios}


def markdown(c: dict) -> str:
    va, vb = c["variants"]
    w = c["workload"]
    lines = [f"# Latency: {vb} beside {va}", "",
             f"From the reports {c['reports'][0]!r} ({c['dates'][0]}) and {c['reports'][1]!r} ({c['dates'][1]}), "
             f"same machine ({c['machine'].get('cpu')}, {c['machine'].get('cores')} cores) and fixed work: "
             f"{w['num_beams']} beams, {w['diffusion_steps']} CFM steps, medians of {c['runs'][0]} and "
             f"{c['runs'][1]} runs per text. Each "
             "variant generates the codes of the same seconds of speech (50 codes/s for IndexTTS-2, 25 for "
             "IndexTTS-2.5).", "",
             "| text | speech s | backend | variant | codes | GPT generate s | GPT ms per code | GPT s per audio s "
             "| S2Mel s | BigVGAN s | total s | RTF |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in c["rows"]:
        lines.append(f"| {r['text']} | {r['speech_seconds']:.1f} | {label(r['backend'])} | "
                     f"{r['variant']} | {r['codes']} | {r['gpt_generate_s']:.3f} | {r['gpt_ms_per_code']:.3g} | "
                     f"{r['gpt_s_per_audio_s']:.3g} | {r['s2mel_s']:.3f} | {r['bigvgan_s']:.3f} | "
                     f"{r['total_s']:.3f} | {r['rtf']:.2f} |")
    lines += ["", f"## {vb} over {va}", "", "| text | backend | GPT generate | GPT per code | total | RTF |",
              "|---|---|---|---|---|---|"]
    for r in c["ratios"]:
        lines.append(f"| {r['text']} | {label(r['backend'])} | {r['gpt_generate_s']:.2f}× | "
                     f"{r['gpt_ms_per_code']:.2f}× | {r['total_s']:.2f}× | {r['rtf']:.2f}× |")
    lines += ["", "Random weights, fixed code counts: the figures are the cost of that much speech, not of what "
              "trained weights would say or stop at.", ""]
    return "\n".join(lines)


def write(c: dict, out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / f"{name}.json", json.dumps(c, indent=1).encode())
    write_bytes_atomic(out_dir / f"{name}.md", markdown(c).encode())


app = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


@app.command()
def main(first: Path = typer.Argument(..., help="a bench report (.json), e.g. IndexTTS-2's"),
         second: Path = typer.Argument(..., help="the other variant's report from the same machine and work"),
         out: Path = typer.Option(Path("out/bench"), "--out", help="folder for NAME.md and NAME.json"),
         name: str = typer.Option("compare", "--name", help="file stem")) -> None:
    """Write the two reports' figures side by side."""
    try:
        c = compare(*(json.loads(Path(p).read_text()) for p in (first, second)))
    except (OSError, ValueError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    write(c, out, name)
    typer.echo(f"wrote {out / name}.md, .json")


if __name__ == "__main__":
    app()
