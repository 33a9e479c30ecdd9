"""``tts-run``: synthesize speech.

This module is imported by the console script, so it must not import torch: the PyTorch
reference backend (``--backend torch``) is imported only when chosen. Defaults and rules come
from the options dataclasses (``options.py``, ``sampling.py``); a broken rule names its flag.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import typer

from .options import DEFAULTS, EMOTION_NAMES, RunOptions
from .sampling import SamplingOptions

app = typer.Typer(add_completion=False, help="Synthesize speech with IndexTTS2.")
log = logging.getLogger("indextts_trt.tts-run")

DEFAULT_TEXT = "Hello there. This is a test of the IndexTTS2 export toolchain."
_S = SamplingOptions()
# options-dataclass field -> the flag that sets it, so an OptionError names what the user typed
FLAGS = {"emo_alpha": "--emotion-alpha", "emotion_vector": "--emotion-vector", "seed": "--seed",
         "max_text_tokens_per_segment": "--max-segment-tokens", "diffusion_steps": "--diffusion-steps",
         "cfg_rate": "--cfg-rate", "num_beams": "--num-beams", "top_k": "--top-k", "top_p": "--top-p",
         "temperature": "--temperature", "repetition_penalty": "--repetition-penalty", "max_new_tokens": "--max-codes"}


def _parse_vector(s: str | None) -> list[float] | None:
    if s is None:
        return None
    try:
        return [float(x) for x in s.replace(" ", "").split(",") if x]
    except ValueError:
        raise typer.BadParameter(f"--emotion-vector must be 8 comma-separated numbers, got {s!r}") from None


@app.command()
def synth(
    text: str = typer.Option(DEFAULT_TEXT, "--text", help="text to speak"),
    speaker: Path | None = typer.Option(None, "--speaker", help="speaker reference audio (WAV/FLAC/OGG/MP3, "
                                        "0.5-15 s used); default: a built-in synthetic voice-like prompt"),
    out: Path = typer.Option(Path("out/tts.wav"), "--out", help="output WAV (22.05 kHz, 16-bit)"),
    backend: str = typer.Option("auto", "--backend", help="auto: TensorRT engines when the engines directory has "
                                "them for this GPU, else ONNX Runtime; trt; ort; torch: the PyTorch reference on "
                                "a checkpoint directory"),
    ort_provider: str = typer.Option("cpu", "--ort-provider", help="ONNX Runtime provider: cpu, or cuda "
                                     "(needs the gpu extra; a fallback to CPU is reported)"),
    engine_dir: Path = typer.Option(Path("engines"), "--engine-dir", help="engines directory (ort/trt backends)"),
    checkpoints: Path = typer.Option(Path("checkpoints"), "--checkpoints", help="checkpoint directory (torch backend)"),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime intra-op threads (0: all cores)"),
    voice: str | None = typer.Option(None, "--voice", help="use a saved voice instead of --speaker (ort/trt)"),
    save_voice: str | None = typer.Option(None, "--save-voice", help="save the --speaker conditioning under this name"),
    voices_dir: Path | None = typer.Option(None, "--voices-dir", help="saved voices (default: ENGINE_DIR/voices)"),
    stream: bool = typer.Option(False, "--stream", help="stream and report the time to first audio (per segment, "
                                "or per code chunk with --stream-chunk)"),
    stream_chunk: int = typer.Option(0, "--stream-chunk", help="code-chunk streaming: synthesize every N committed "
                                     "codes (the peer uses 100); 0: per-segment streaming. Implies --stream"),
    stream_overlap: int = typer.Option(20, "--stream-overlap", help="codes each chunk window overlaps the previous "
                                       "one by (crossfaded), in [0, --stream-chunk]"),
    emotion_audio: Path | None = typer.Option(None, "--emotion-audio", help="emotion reference audio"),
    emotion_vector: str | None = typer.Option(None, "--emotion-vector", help="8 comma-separated weights in [0, 1], "
                                              f"sum <= 1: {', '.join(EMOTION_NAMES)}; replaces --emotion-audio"),
    emotion_alpha: float = typer.Option(DEFAULTS.emo_alpha, "--emotion-alpha", help="emotion strength in [0, 1]"),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="seed for sampling and diffusion noise (>= 0)"),
    greedy: bool = typer.Option(False, "--greedy", help="greedy decoding (1 beam, argmax) instead of beam sampling"),
    num_beams: int = typer.Option(_S.num_beams, "--num-beams", help="beams of the beam sampler (>= 1)"),
    top_k: int = typer.Option(_S.top_k, "--top-k", help="keep the k most likely codes (0: off)"),
    top_p: float = typer.Option(_S.top_p, "--top-p", help="nucleus sampling mass in (0, 1]"),
    temperature: float = typer.Option(_S.temperature, "--temperature", help="sampling temperature (> 0)"),
    repetition_penalty: float = typer.Option(_S.repetition_penalty, "--repetition-penalty",
                                             help="HF repetition penalty over the code history (> 0; 1: off)"),
    max_codes: int = typer.Option(_S.max_new_tokens, "--max-codes", help="at most this many semantic codes per "
                                  "segment (50 per second of speech)"),
    max_segment_tokens: int = typer.Option(DEFAULTS.max_text_tokens_per_segment, "--max-segment-tokens",
                                           help="text tokens per segment (>= 1)"),
    diffusion_steps: int = typer.Option(DEFAULTS.diffusion_steps, "--diffusion-steps",
                                        help="flow-matching Euler steps, in [1, 1000]"),
    cfg_rate: float = typer.Option(DEFAULTS.cfg_rate, "--cfg-rate", help="classifier-free guidance rate, in [0, 10]"),
    report: Path | None = typer.Option(None, "--report", help="also write the latency report as JSON here"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Synthesize TEXT in the voice of SPEAKER and write a WAV plus a latency report."""
    from .errors import OptionError

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sampling = (SamplingOptions.greedy(max_new_tokens=max_codes) if greedy else SamplingOptions(
            num_beams=num_beams, top_k=top_k, top_p=top_p, temperature=temperature,
            repetition_penalty=repetition_penalty, max_new_tokens=max_codes))
        opts = RunOptions(emo_alpha=emotion_alpha, emotion_vector=_parse_vector(emotion_vector),
                          max_text_tokens_per_segment=max_segment_tokens, sampling=sampling,
                          diffusion_steps=diffusion_steps, cfg_rate=cfg_rate, seed=seed).validated()
    except OptionError as e:
        raise typer.BadParameter(f"{FLAGS.get(e.field, e.field)} {e.value!r}: {e.rule}") from None
    if backend not in ("auto", "trt", "ort", "torch"):
        raise typer.BadParameter(f"--backend {backend!r}: use auto, trt (TensorRT), ort (ONNX Runtime) or torch "
                                 "(PyTorch reference)")
    if ort_provider not in ("cpu", "cuda"):
        raise typer.BadParameter(f"--ort-provider {ort_provider!r}: use cpu or cuda")
    stream = stream or stream_chunk > 0
    if backend == "torch" and (voice or save_voice or stream):
        raise typer.BadParameter("--voice/--save-voice/--stream need the ort or trt backend")
    chunk = None
    if stream_chunk > 0:
        from .streaming import ChunkPlan

        try:
            chunk = ChunkPlan(stream_chunk, stream_overlap)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None

    with tempfile.TemporaryDirectory() as tmp:
        if speaker is None and voice is None:
            from .audio import SR_22K, write_wav_int16
            from .demo_audio import synth_voice_prompt

            speaker = Path(tmp) / "demo_prompt.wav"
            write_wav_int16(speaker, synth_voice_prompt(3.0, SR_22K, seed=1), SR_22K)
            log.info("no --speaker given: using a built-in synthetic 3 s prompt")
        try:
            if backend == "torch":
                rep = _run_torch(checkpoints, text, speaker, out, emotion_audio, opts)
            else:
                rep = _run_engines(engine_dir, text, speaker, out, emotion_audio, opts, threads=threads, voice=voice,
                                   save_voice=save_voice, voices_dir=voices_dir or engine_dir / "voices",
                                   stream=stream, chunk=chunk, backend=backend, ort_provider=ort_provider)
        except Exception as e:  # a clear one-line error for the known failure kinds, nothing half-written
            if _is_user_error(e):
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(2) from None
            raise
    _print_report(rep, out)
    if report is not None:
        from .files import write_text_atomic

        write_text_atomic(report, json.dumps(rep, indent=2))


def _is_user_error(e: Exception) -> bool:
    from .audio import AudioError
    from .config import ConfigError
    from .pipeline import EngineError
    from .runners import BackendError
    from .text import TextError

    return isinstance(e, (AudioError, ConfigError, EngineError, BackendError, TextError, ValueError, OSError))


def _run_engines(engine_dir, text, speaker, out, emotion_audio, opts: RunOptions, *, threads, voice, save_voice,
                 voices_dir, stream, chunk, backend, ort_provider) -> dict:
    import numpy as np

    from .audio import write_wav_int16
    from .pipeline import open_pipeline

    t0 = time.perf_counter()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if ort_provider == "cuda" else None
    with open_pipeline(engine_dir, providers=providers, threads=threads or None, backend=backend) as pipe:
        log.debug("backend: %s (%s)", pipe.backend, pipe.backend_reason)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if voice:
            spk = pipe.load_voice(voices_dir, voice)
        elif save_voice:
            spk = pipe.save_voice(voices_dir, save_voice, speaker)
            log.info("saved voice %r in %s", save_voice, voices_dir)
        else:
            spk = speaker
        ttfa, codes = None, []
        if stream:
            from collections import defaultdict

            pieces, stage_seconds = [], defaultdict(float)
            for piece in pipe.stream(text, spk, emotion_audio=emotion_audio, options=opts, chunk=chunk,
                                     seconds=stage_seconds):
                if ttfa is None:
                    ttfa = time.perf_counter() - t0
                pieces.append(piece)
            wav = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
            stage_seconds = dict(stage_seconds)
        else:
            res = pipe.synthesize(text, spk, emotion_audio=emotion_audio, options=opts, progress=True)
            wav, stage_seconds, codes = res.wav, res.seconds, [int(len(s.codes)) for s in res.segments]
        total = time.perf_counter() - t0
        write_wav_int16(out, wav, pipe.sample_rate)
        used = ", ".join(pipe.providers_in_use)
        what = f"TensorRT ({used})" if pipe.backend == "trt" else f"onnxruntime ({used}), fp32 graphs"
        audio_s = len(wav) / pipe.sample_rate
    rep = {"backend": what, "engine_dir": str(engine_dir), "load_seconds": load_s, "total_seconds": total,
           "audio_seconds": audio_s, "rtf": total / max(audio_s, 1e-9), "segments": len(codes) if codes else None,
           "codes_per_segment": codes, "stage_seconds": stage_seconds}
    if ttfa is not None:
        rep["time_to_first_audio_seconds"] = ttfa
        rep["streaming"] = (f"code-chunk streaming, {chunk.chunk_codes} codes, overlap {chunk.overlap_codes}"
                            if chunk else "per-segment streaming")
    return rep


def _run_torch(checkpoints, text, speaker, out, emotion_audio, opts: RunOptions) -> dict:
    from .audio import write_wav_int16

    try:
        from indextts_trt.reference import open_reference_pipeline  # the one lazy reach into the reference
    except ImportError as e:
        raise typer.BadParameter(f"--backend torch needs the reference extra (torch): {e}") from None
    t0 = time.perf_counter()
    pipe = open_reference_pipeline(checkpoints)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = pipe.synthesize(text, speaker, emotion_audio=emotion_audio, options=opts, progress=True)
    total = time.perf_counter() - t0
    write_wav_int16(out, res.wav, res.sample_rate)
    return {"backend": "torch (PyTorch reference, CPU fp32)", "checkpoints": str(checkpoints), "load_seconds": load_s,
            "total_seconds": total, "audio_seconds": res.duration, "rtf": total / max(res.duration, 1e-9),
            "segments": len(res.segments), "codes_per_segment": [int(len(s.codes)) for s in res.segments],
            "stage_seconds": res.seconds}


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
