"""``tts-run``: synthesize speech.

This module is imported by the console script, so it must not import torch: the PyTorch
reference backend (``--backend torch``) is imported only when chosen.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, help="Synthesize speech with IndexTTS2.")

DEFAULT_TEXT = "Hello there. This is a test of the IndexTTS2 export toolchain."


def _parse_vector(s: str | None) -> list[float] | None:
    if s is None:
        return None
    try:
        v = [float(x) for x in s.replace(" ", "").split(",") if x]
    except ValueError:
        raise typer.BadParameter(f"--emotion-vector must be 8 comma-separated numbers, got {s!r}") from None
    if len(v) != 8:
        raise typer.BadParameter(f"--emotion-vector needs 8 weights [happy, angry, sad, afraid, disgusted, "
                                 f"melancholic, surprised, calm], got {len(v)}")
    return v


@app.command()
def synth(
    text: str = typer.Option(DEFAULT_TEXT, "--text", help="text to speak"),
    speaker: Path | None = typer.Option(None, "--speaker", help="speaker reference audio (WAV/FLAC/OGG); "
                                        "default: a built-in synthetic voice-like prompt"),
    out: Path = typer.Option(Path("out/tts.wav"), "--out", help="output WAV (22.05 kHz, 16-bit)"),
    backend: str = typer.Option("auto", "--backend", help="auto: TensorRT engines when the engines directory has "
                                "them for this GPU, else ONNX Runtime; trt; ort; torch: the PyTorch reference on "
                                "a checkpoint directory"),
    ort_provider: str = typer.Option("cpu", "--ort-provider", help="ONNX Runtime provider: cpu, or cuda "
                                     "(needs the gpu extra; a fallback to CPU is reported)"),
    engine_dir: Path = typer.Option(Path("engines"), "--engine-dir", help="engines directory (ort backend)"),
    checkpoints: Path = typer.Option(Path("checkpoints"), "--checkpoints", help="checkpoint directory (torch backend)"),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime intra-op threads (0: all cores)"),
    voice: str | None = typer.Option(None, "--voice", help="use a saved voice instead of --speaker (ort backend)"),
    save_voice: str | None = typer.Option(None, "--save-voice", help="save the --speaker conditioning under this name"),
    voices_dir: Path | None = typer.Option(None, "--voices-dir", help="saved voices (default: ENGINE_DIR/voices)"),
    stream: bool = typer.Option(False, "--stream", help="stream and report the time to first audio (per segment, "
                                "or per code chunk with --stream-chunk)"),
    stream_chunk: int = typer.Option(0, "--stream-chunk", help="code-chunk streaming: synthesize every N committed "
                                     "codes (the peer uses 100); 0: per-segment streaming. Implies --stream"),
    stream_overlap: int = typer.Option(20, "--stream-overlap", help="codes each chunk window overlaps the previous "
                                       "one by (crossfaded)"),
    emotion_audio: Path | None = typer.Option(None, "--emotion-audio", help="emotion reference audio"),
    emotion_vector: str | None = typer.Option(None, "--emotion-vector", help="8 weights, comma separated"),
    emotion_alpha: float = typer.Option(1.0, "--emotion-alpha", help="emotion strength in [0, 1]"),
    seed: int = typer.Option(0, "--seed", help="seed for sampling and diffusion noise"),
    greedy: bool = typer.Option(False, "--greedy", help="greedy decoding (1 beam, argmax) instead of 3-beam sampling"),
    num_beams: int = typer.Option(3, "--num-beams"),
    top_k: int = typer.Option(30, "--top-k"),
    top_p: float = typer.Option(0.8, "--top-p"),
    temperature: float = typer.Option(0.8, "--temperature"),
    repetition_penalty: float = typer.Option(10.0, "--repetition-penalty"),
    max_codes: int = typer.Option(1500, "--max-codes", help="at most this many semantic codes per segment"),
    max_segment_tokens: int = typer.Option(120, "--max-segment-tokens"),
    diffusion_steps: int = typer.Option(25, "--diffusion-steps"),
    cfg_rate: float = typer.Option(0.7, "--cfg-rate"),
    report: Path | None = typer.Option(None, "--report", help="also write the latency report as JSON here"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Synthesize TEXT in the voice of SPEAKER and write a WAV plus a latency report."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from indextts_trt.runtime.sampling import SamplingOptions

    vec = _parse_vector(emotion_vector)
    if greedy:
        sampling = SamplingOptions.greedy(max_new_tokens=max_codes)
    else:
        sampling = SamplingOptions(num_beams=num_beams, top_k=top_k, top_p=top_p, temperature=temperature,
                                   repetition_penalty=repetition_penalty, max_new_tokens=max_codes)
    try:
        sampling = sampling.validated()
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if backend not in ("auto", "trt", "ort", "torch"):
        raise typer.BadParameter(f"--backend {backend!r}: use auto, trt (TensorRT), ort (ONNX Runtime) or torch "
                                 "(PyTorch reference)")
    if ort_provider not in ("cpu", "cuda"):
        raise typer.BadParameter(f"--ort-provider {ort_provider!r}: use cpu or cuda")

    with tempfile.TemporaryDirectory() as tmp:
        if speaker is None:
            from indextts_trt.runtime.audio import SR_22K, write_wav_int16
            from indextts_trt.runtime.demo_audio import synth_voice_prompt

            speaker = Path(tmp) / "demo_prompt.wav"
            write_wav_int16(speaker, synth_voice_prompt(3.0, SR_22K, seed=1), SR_22K)
            logging.getLogger(__name__).info("no --speaker given: using a built-in synthetic 3 s prompt")
        args = (text, speaker, out, emotion_audio, vec, emotion_alpha, seed, sampling, max_segment_tokens,
                diffusion_steps, cfg_rate)
        stream = stream or stream_chunk > 0
        if backend == "torch" and (voice or save_voice or stream):
            raise typer.BadParameter("--voice/--save-voice/--stream need the ort backend")
        chunk = None
        if stream_chunk > 0:
            from indextts_trt.runtime.streaming import ChunkPlan

            try:
                chunk = ChunkPlan(stream_chunk, stream_overlap)
            except ValueError as e:
                raise typer.BadParameter(str(e)) from None
        try:
            if backend == "torch":
                rep = _run_torch(checkpoints, *args)
            else:
                extra = {"voice": voice, "save_voice": save_voice, "stream": stream, "chunk": chunk,
                         "backend": backend, "ort_provider": ort_provider,
                         "voices_dir": voices_dir or engine_dir / "voices"}
                rep = _run_ort(engine_dir, threads, *args, **extra)
        except Exception as e:  # a clear one-line error for the known failure kinds, nothing half-written
            from indextts_trt.runtime.audio import AudioError
            from indextts_trt.runtime.config import ConfigError
            from indextts_trt.runtime.engine import BackendError, EngineError
            from indextts_trt.runtime.text import TextError

            if isinstance(e, (AudioError, ConfigError, EngineError, BackendError, TextError, ValueError, OSError)):
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(2) from None
            raise
    _print_report(rep, out)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(rep, indent=2))


def _run_ort(engine_dir, threads, text, speaker, out, emotion_audio, vec, alpha, seed, sampling, max_seg, steps,
             cfg_rate, voice=None, save_voice=None, stream=False, voices_dir=None, chunk=None, backend="auto",
             ort_provider="cpu"):
    from collections import defaultdict

    import numpy as np

    from indextts_trt.runtime.audio import SR_22K, write_wav_int16
    from indextts_trt.runtime.engine import OnnxPipeline, RunOptions

    t0 = time.perf_counter()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if ort_provider == "cuda" else None
    pipe = OnnxPipeline(engine_dir, providers=providers, threads=threads or None, backend=backend)
    if backend == "auto":
        logging.getLogger(__name__).info("backend: %s (%s)", pipe.backend, pipe.backend_reason)
    load_s = time.perf_counter() - t0
    opts = RunOptions(emo_alpha=alpha, emotion_vector=vec, max_text_tokens_per_segment=max_seg, sampling=sampling,
                      diffusion_steps=steps, cfg_rate=cfg_rate, seed=seed)
    t0 = time.perf_counter()
    if voice:
        spk = pipe.load_voice(voices_dir, voice)
    elif save_voice:
        spk = pipe.save_voice(voices_dir, save_voice, speaker)
        logging.getLogger(__name__).info("saved voice %r in %s", save_voice, voices_dir)
    else:
        spk = speaker
    ttfa = None
    if stream:
        pieces, stage_seconds = [], defaultdict(float)
        for piece in pipe.stream(text, spk, emotion_audio=emotion_audio, options=opts, chunk=chunk,
                                 seconds=stage_seconds):
            if ttfa is None:
                ttfa = time.perf_counter() - t0
            pieces.append(piece)
        wav = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        stage_seconds, codes = dict(stage_seconds), []
    else:
        res = pipe.synthesize(text, spk, emotion_audio=emotion_audio, options=opts, progress=True)
        wav, stage_seconds, codes = res.wav, res.seconds, [int(len(s.codes)) for s in res.segments]
    total = time.perf_counter() - t0
    write_wav_int16(out, wav, SR_22K)
    providers = sorted({st.provider for st in pipe._stages.values()})
    what = (f"TensorRT ({', '.join(providers)})" if pipe.backend == "trt"
            else f"onnxruntime ({', '.join(providers)}), fp32 graphs")
    rep = {"backend": what, "engine_dir": str(engine_dir),
           "load_seconds": load_s, "total_seconds": total, "audio_seconds": len(wav) / SR_22K,
           "rtf": total / max(len(wav) / SR_22K, 1e-9), "segments": len(codes) if codes else None,
           "codes_per_segment": codes, "stage_seconds": stage_seconds}
    if ttfa is not None:
        rep["time_to_first_audio_seconds"] = ttfa
        rep["streaming"] = (f"code-chunk streaming, {chunk.chunk_codes} codes, overlap {chunk.overlap_codes}"
                            if chunk else "per-segment streaming")
    return rep


def _run_torch(checkpoints, text, speaker, out, emotion_audio, vec, alpha, seed, sampling, max_seg, steps, cfg_rate):
    from indextts_trt.runtime.audio import write_wav_int16

    try:
        from indextts_trt.reference.pipeline import ReferencePipeline, SynthesisOptions
    except ImportError as e:
        raise typer.BadParameter(f"--backend torch needs the reference extra (torch): {e}") from None
    t0 = time.perf_counter()
    pipe = ReferencePipeline(checkpoints)
    load_s = time.perf_counter() - t0
    opts = SynthesisOptions(emo_alpha=alpha, emotion_vector=vec, max_text_tokens_per_segment=max_seg,
                            sampling=sampling, diffusion_steps=steps, cfg_rate=cfg_rate, seed=seed)
    t0 = time.perf_counter()
    res = pipe.synthesize(text, speaker, emotion_audio=emotion_audio, options=opts, progress=True)
    total = time.perf_counter() - t0
    write_wav_int16(out, res.wav, res.sample_rate)
    return {
        "backend": "torch (PyTorch reference, CPU fp32)",
        "checkpoints": str(checkpoints),
        "load_seconds": load_s,
        "total_seconds": total,
        "audio_seconds": res.duration,
        "rtf": total / max(res.duration, 1e-9),
        "segments": len(res.segments),
        "codes_per_segment": [int(len(s.codes)) for s in res.segments],
        "stage_seconds": res.seconds,
    }


def _print_report(rep: dict, out: Path) -> None:
    typer.echo(f"wrote {out} ({rep['audio_seconds']:.2f} s of audio"
               + (f", {rep['segments']} segment(s), codes {rep['codes_per_segment']})" if rep["segments"] else ")"))
    typer.echo(f"backend: {rep['backend']}; models loaded in {rep['load_seconds']:.2f} s")
    typer.echo(f"{'stage':<16s}{'seconds':>10s}")
    for k, v in rep["stage_seconds"].items():
        typer.echo(f"{k:<16s}{v:>10.3f}")
    typer.echo(f"{'total':<16s}{rep['total_seconds']:>10.3f}   RTF {rep['rtf']:.3f}")
    if "time_to_first_audio_seconds" in rep:
        typer.echo(f"time to first audio: {rep['time_to_first_audio_seconds']:.3f} s ({rep['streaming']})")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
