"""``tts-run``: synthesize speech.

This module is imported by the console script, so it must not import torch: the PyTorch
reference backend (``--backend torch``) is imported only when chosen. Defaults and rules come
from the options dataclasses (``options.py``, ``sampling.py``, ``streaming.ChunkPlan``) and the
pipeline's (``check_open_options``); a broken rule names its flag. Every usage rule is checked
before any file is read (:func:`_request`); errors are one line with exit code 2 (usage) or 1
(data), never a traceback unless ``--debug`` (``cli_errors.py``).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import typer

from .audio.io import MAX_PROMPT_SECONDS, MIN_PROMPT_SECONDS
from .cli_errors import EXIT_CODES_HELP, cli_errors, setup_logging
from .errors import OptionError, UsageError, UserError
from .options import DEFAULTS, EMOTION_NAMES, MAX_CFG_RATE, MAX_DIFFUSION_STEPS, NUM_EMOTIONS, RunOptions
from .pipeline import MAX_THREADS
from .sampling import SamplingOptions
from .streaming import ChunkPlan
from .voices import NAME_RULE

# plain help (no rich panels): flags show no "<bool>" metavar, every line is text a user can copy
app = typer.Typer(add_completion=False, rich_markup_mode=None, help="Synthesize speech with IndexTTS2.")
log = logging.getLogger("indextts_trt.tts-run")

DEFAULT_TEXT = "Hello there. This is a test of the IndexTTS2 export toolchain."
LONG_TEXT = 2000  # characters: from here on, say that the text is normalized first (it takes a while)
_S = SamplingOptions()
# options-dataclass field -> the flag that sets it, so an OptionError names what the user typed
FLAGS = {"emo_alpha": "--emotion-alpha", "emotion_vector": "--emotion-vector", "emotion_audio": "--emotion-audio",
         "seed": "--seed", "max_text_tokens_per_segment": "--max-segment-tokens", "diffusion_steps": "--diffusion-steps",
         "cfg_rate": "--cfg-rate", "num_beams": "--num-beams", "top_k": "--top-k", "top_p": "--top-p",
         "temperature": "--temperature", "repetition_penalty": "--repetition-penalty", "max_new_tokens": "--max-codes",
         "threads": "--threads", "backend": "--backend", "precision": "--precision", "providers": "--ort-provider",
         "chunk_codes": "--stream-chunk", "overlap_codes": "--stream-overlap", "voice": "--voice",
         "save_voice": "--save-voice", "speaker": "--speaker", "text": "--text", "text_file": "--text-file",
         "language": "--language", "duration_factor": "--duration-factor", "text_normalization": "--no-text-normalization"}
BACKEND_CHOICES = ("auto", "trt", "ort", "torch")


def _parse_vector(s: str | None) -> list[float] | None:
    if s is None:
        return None
    try:
        return [float(x) for x in s.replace(" ", "").split(",") if x]
    except ValueError:
        raise OptionError("emotion_vector", s, f"must be {NUM_EMOTIONS} comma-separated numbers") from None


def _conflict(flag: str, other: str, why: str) -> UsageError:
    return UsageError(f"{flag} cannot be combined with {other}: {why}")


@app.command(epilog=EXIT_CODES_HELP)
def synth(
    text: str | None = typer.Option(None, "--text", show_default=False, help="text to speak, of any length: it is "
                                    "cut into segments of at most --max-segment-tokens tokens (default: a built-in "
                                    "sentence). One shell argument holds at most 128 KiB on Linux: use --text-file "
                                    "for more"),
    text_file: str | None = typer.Option(None, "--text-file", metavar="<path|->", help="read the text from this UTF-8 "
                                         "file, or from standard input with '-' (not with --text; default: the text "
                                         "is --text)"),
    speaker: Path | None = typer.Option(None, "--speaker", help=f"speaker reference audio (WAV/FLAC/OGG/MP3, "
                                        f"{MIN_PROMPT_SECONDS:g} s to {MAX_PROMPT_SECONDS:g} s; only the first "
                                        f"{MAX_PROMPT_SECONDS:g} s of a longer one are used; default: a built-in "
                                        "synthetic 3 s voice-like prompt)"),
    out: Path = typer.Option(Path("out/tts.wav"), "--out", help="output WAV (22.05 kHz, 16-bit): a regular file or "
                             "a new path, written atomically"),
    backend: str = typer.Option("auto", "--backend", help="auto: TensorRT engines when the engines directory has "
                                "them for this GPU, else ONNX Runtime; trt; ort; torch: the PyTorch reference on "
                                "a checkpoint directory"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16 (the gated fp16 graphs `tts-export build "
                                  "--precision fp16` made; ort) | int8 (the gated int8 graphs `tts-export build "
                                  "--precision int8` made: int8 weights on the CPU; ort only) | bf16 (TensorRT "
                                  "engines only); TensorRT engines run at the precision they were built at"),
    ort_provider: str = typer.Option("cpu", "--ort-provider", help="ONNX Runtime provider: cpu, or cuda "
                                     "(needs the gpu extra; a fallback to CPU is reported)"),
    engine_dir: Path | None = typer.Option(None, "--engine-dir", show_default=False,
                                           help="engines directory (ort/trt backends), every file checked against "
                                           "its manifest before use (default: engines/, or the one build below it, "
                                           "e.g. the demo's engines/tiny)"),
    checkpoints: Path | None = typer.Option(None, "--checkpoints", show_default=False,
                                            help="checkpoint directory (torch backend; default: checkpoints/, or "
                                            "the one checkpoint folder below it, e.g. checkpoints/tiny)"),
    threads: int = typer.Option(0, "--threads", help=f"ONNX Runtime intra-op threads, in [0, {MAX_THREADS}] "
                                "(0: all cores)"),
    voice: str | None = typer.Option(None, "--voice", help=f"use a saved voice instead of --speaker (ort/trt; "
                                     f"{NAME_RULE}; default: none, the prompt is --speaker)"),
    save_voice: str | None = typer.Option(None, "--save-voice", help="save the --speaker conditioning under this "
                                          "name, then synthesize with it (same name rule as --voice; default: "
                                          "nothing is saved)"),
    voices_dir: Path | None = typer.Option(None, "--voices-dir", help="folder of saved voices (default: "
                                           "ENGINE_DIR/voices)"),
    stream: bool = typer.Option(False, "--stream", help="stream and report the time to first audio (per segment, "
                                "or per code chunk with --stream-chunk); the WAV is the same"),
    stream_chunk: int | None = typer.Option(None, "--stream-chunk", help="code-chunk streaming: synthesize every N "
                                            "committed codes, N >= 1 (the peer uses 100; 0: per-segment streaming; "
                                            "default: off). Implies --stream"),
    stream_overlap: int | None = typer.Option(None, "--stream-overlap", help="codes each chunk window overlaps the "
                                              f"previous one by (crossfaded), in [0, --stream-chunk] (default "
                                              f"{ChunkPlan().overlap_codes}); needs --stream-chunk"),
    emotion_audio: Path | None = typer.Option(None, "--emotion-audio", help="emotion reference audio (same limits as "
                                              "--speaker; default: the speaker prompt's own emotion)"),
    emotion_vector: str | None = typer.Option(None, "--emotion-vector", help=f"{NUM_EMOTIONS} comma-separated "
                                              f"weights in [0, 1], sum <= 1: {', '.join(EMOTION_NAMES)}; instead of "
                                              "--emotion-audio (not with it; default: none)"),
    emotion_alpha: float | None = typer.Option(None, "--emotion-alpha", help="emotion strength in [0, 1] (default "
                                               f"{DEFAULTS.emo_alpha:g}); needs --emotion-audio or --emotion-vector"),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="seed of the sampling draws and the diffusion noise, in "
                             "[0, 2**63); segment i uses seed + i"),
    greedy: bool = typer.Option(False, "--greedy", help="greedy decoding (1 beam, argmax) instead of beam sampling; "
                                "not with --num-beams/--top-k/--top-p/--temperature"),
    num_beams: int | None = typer.Option(None, "--num-beams", help="beams of the beam sampler, >= 1 and at most "
                                         f"the engines' decode range (8 as built; default {_S.num_beams})"),
    top_k: int | None = typer.Option(None, "--top-k", help=f"sample only among the k most likely codes, >= 0 (0: "
                                     f"off; default {_S.top_k})"),
    top_p: float | None = typer.Option(None, "--top-p", help=f"nucleus sampling: only the most likely codes whose "
                                       f"probabilities sum to p, in (0, 1] (1: off; default {_S.top_p:g})"),
    temperature: float | None = typer.Option(None, "--temperature", help=f"divide the scores by this before "
                                             f"sampling: lower is more conservative; finite and > 0 (default "
                                             f"{_S.temperature:g})"),
    repetition_penalty: float = typer.Option(_S.repetition_penalty, "--repetition-penalty",
                                             help="HF repetition penalty on every code already in the history: "
                                             "finite, > 0 (1: off)"),
    max_codes: int = typer.Option(_S.max_new_tokens, "--max-codes", help="at most this many semantic codes per "
                                  "segment, >= 1 (50 per second of speech, 25 for IndexTTS-2.5; the model's "
                                  "max_mel_tokens caps it)"),
    max_segment_tokens: int = typer.Option(DEFAULTS.max_text_tokens_per_segment, "--max-segment-tokens",
                                           help="cut the text into segments of at most this many text tokens, >= 1 "
                                           "and at most the model's max_text_tokens (600 released, 120 tiny)"),
    diffusion_steps: int = typer.Option(DEFAULTS.diffusion_steps, "--diffusion-steps",
                                        help=f"flow-matching (CFM) Euler steps of S2Mel, in [1, "
                                        f"{MAX_DIFFUSION_STEPS}]: more is slower, upstream uses 25"),
    cfg_rate: float = typer.Option(DEFAULTS.cfg_rate, "--cfg-rate", help=f"classifier-free guidance rate of S2Mel, "
                                   f"in [0, {MAX_CFG_RATE:g}] (0: no guidance)"),
    language: str | None = typer.Option(None, "--language", help="IndexTTS-2.5 only: the text's language, zh, en, "
                                        "zhen, ja, es or ar (default zh)"),
    duration_factor: float | None = typer.Option(None, "--duration-factor", help="IndexTTS-2.5 only: speech "
                                                 "duration x this, in [0.5, 2] (default 1)"),
    no_text_normalization: bool = typer.Option(False, "--no-text-normalization", help="IndexTTS-2.5 only: speak "
                                               "numbers and symbols as written"),
    report: Path | None = typer.Option(None, "--report", help="also write the latency report as JSON here (a "
                                       "regular file or a new path, not --out; default: only printed)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug log lines too (which backend and why, "
                                 "library messages)"),
    debug: bool = typer.Option(False, "--debug", help="print the traceback of an error too"),
) -> None:
    """Synthesize TEXT in the voice of SPEAKER and write a WAV plus a latency report."""
    setup_logging(verbose)
    with cli_errors(debug, FLAGS):
        opts, chunk = _request(**locals())
        if text_file is not None:
            text = _read_text(text_file)
        elif text is None:
            text = DEFAULT_TEXT
        if backend == "torch":
            from .workdirs import checkpoints_with_config

            checkpoints = checkpoints_with_config(checkpoints)
        else:
            from .workdirs import engine_dir_or_default

            engine_dir = engine_dir_or_default(engine_dir)
        if len(text) >= LONG_TEXT:
            log.info("text: %d characters; normalizing and cutting it into segments first (the English grammar "
                     "is slow on long text, and superlinear in its length)", len(text))
        with tempfile.TemporaryDirectory() as tmp:
            if speaker is None and voice is None:
                from .audio import SR_22K, write_wav_int16
                from .demo_audio import synth_voice_prompt

                speaker = Path(tmp) / "demo_prompt.wav"
                write_wav_int16(speaker, synth_voice_prompt(3.0, SR_22K, seed=1), SR_22K)
                prompt = "a built-in synthetic 3 s prompt (no --speaker given)"
            else:
                prompt = f"saved voice {voice!r}" if voice else str(speaker)
            if backend == "torch":
                rep = _run_torch(checkpoints, text, speaker, out, emotion_audio, opts)
            else:
                rep = _run_engines(engine_dir, text, speaker, out, emotion_audio, opts, threads=threads, voice=voice,
                                   save_voice=save_voice, voices_dir=voices_dir or engine_dir / "voices",
                                   stream=stream or stream_chunk is not None, chunk=chunk, backend=backend,
                                   ort_provider=ort_provider, precision=precision)
        rep["speaker"] = prompt
        _print_report(rep, out)
        if report is not None:
            from .files import write_text_atomic

            write_text_atomic(report, json.dumps(rep, indent=2))


def _read_text(source: str) -> str:
    """The text of --text-file: a UTF-8 file (a byte-order mark is dropped), or stdin for '-'."""
    try:
        if source == "-":
            if sys.stdin.isatty():
                log.info("reading the text from standard input (end it with Ctrl-D)")
            data = sys.stdin.buffer.read()
        else:
            data = Path(source).read_bytes()
    except OSError as e:
        raise UserError(f"--text-file {source}: cannot read it: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        where = "standard input" if source == "-" else source
        raise UserError(f"--text-file {where}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") \
            from None


def _request(*, text, text_file, backend, precision, ort_provider, threads, voice, save_voice, speaker, stream,
             stream_chunk, stream_overlap, emotion_audio, emotion_vector, emotion_alpha, seed, greedy, num_beams, top_k,
             top_p, temperature, repetition_penalty, max_codes, max_segment_tokens, diffusion_steps, cfg_rate, out,
             report, language=None, duration_factor=None, no_text_normalization=False,
             **_) -> tuple[RunOptions, ChunkPlan | None]:
    """Every usage rule, before any file is read: the options' own (``RunOptions``,
    ``SamplingOptions``, ``ChunkPlan``, the pipeline's), then the flags' combinations, then the
    write targets. → (the run options, the chunk plan or None)."""
    from .files import check_write_target
    from .pipeline import check_open_options
    from .voices import check_voice_name

    if backend not in BACKEND_CHOICES:
        raise OptionError("backend", backend, "use auto, trt (TensorRT), ort (ONNX Runtime) or torch "
                          "(PyTorch reference)")
    if ort_provider not in ("cpu", "cuda"):
        raise OptionError("providers", ort_provider, "use cpu or cuda")
    check_open_options("ort", None, threads, precision)
    if backend == "torch" and precision != "fp32":
        raise UsageError(f"--precision {precision} needs the ort or trt backend (the PyTorch reference is fp32)")
    if text is not None and text_file is not None:
        raise _conflict("--text", "--text-file", "give the text one way")
    sampling_flags = {"--num-beams": num_beams, "--top-k": top_k, "--top-p": top_p, "--temperature": temperature}
    if greedy:
        given = [f for f, v in sampling_flags.items() if v is not None]
        if given:
            raise _conflict("--greedy", ", ".join(given), "greedy decoding fixes them")
        sampling = SamplingOptions.greedy(max_new_tokens=max_codes, repetition_penalty=repetition_penalty)
    else:
        chosen = dict(num_beams=num_beams, top_k=top_k, top_p=top_p, temperature=temperature)
        sampling = SamplingOptions(**{k: v for k, v in chosen.items() if v is not None},
                                   repetition_penalty=repetition_penalty, max_new_tokens=max_codes)
    common = dict(emo_alpha=DEFAULTS.emo_alpha if emotion_alpha is None else emotion_alpha,
                  emotion_vector=_parse_vector(emotion_vector), max_text_tokens_per_segment=max_segment_tokens,
                  sampling=sampling, diffusion_steps=diffusion_steps, cfg_rate=cfg_rate, seed=seed)
    v25 = {k: v for k, v in (("language", language), ("duration_factor", duration_factor),
                             ("text_normalization", False if no_text_normalization else None)) if v is not None}
    if v25:  # IndexTTS-2.5's options; on an IndexTTS-2 directory the pipeline names the flag
        from .indextts25.options import RunOptions25

        opts = RunOptions25(**common, **v25).check_request(emotion_audio)
    else:
        opts = RunOptions(**common).check_request(emotion_audio)
    for field, name in (("voice", voice), ("save_voice", save_voice)):
        if name is not None:
            check_voice_name(name, field)
    if voice is not None and speaker is not None:
        raise _conflict("--voice", "--speaker", "a saved voice replaces the speaker prompt")
    if voice is not None and save_voice is not None:
        raise _conflict("--voice", "--save-voice", "a voice is saved from a --speaker prompt")
    if save_voice is not None and speaker is None:
        raise UsageError("--save-voice needs --speaker (the prompt whose conditioning is saved)")
    if backend == "torch" and (voice is not None or save_voice is not None or stream or stream_chunk is not None):
        raise UsageError("--voice/--save-voice/--stream/--stream-chunk need the ort or trt backend")
    if stream_overlap is not None and not stream_chunk:
        raise UsageError("--stream-overlap needs --stream-chunk N (N >= 1): it is the overlap of code chunks")
    chunk = None
    if stream_chunk is not None and stream_chunk != 0:  # 0: per-segment streaming
        chunk = ChunkPlan(stream_chunk) if stream_overlap is None else ChunkPlan(stream_chunk, stream_overlap)
    check_write_target(out)
    if report is not None:
        check_write_target(report)
        if report.resolve() == out.resolve():
            raise _conflict("--report", "--out", "they name the same file")
    return opts, chunk


def _run_engines(engine_dir, text, speaker, out, emotion_audio, opts: RunOptions, *, threads, voice, save_voice,
                 voices_dir, stream, chunk, backend, ort_provider, precision) -> dict:
    import numpy as np

    from .audio import write_wav_int16
    from .pipeline import open_pipeline

    t0 = time.perf_counter()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if ort_provider == "cuda" else None
    with open_pipeline(engine_dir, providers=providers, threads=threads or None, backend=backend,
                       precision=precision) as pipe:
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
        what = f"TensorRT ({used})" if pipe.backend == "trt" else f"onnxruntime ({used}), {pipe.precision} graphs"
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
        raise UserError(f"--backend torch needs the reference extra (pip install 'indextts-trt[reference]'): {e}") \
            from None
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


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s"
    m, sec = divmod(round(seconds), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min {sec:02d} s"


def codes_summary(codes: list[int]) -> str:
    """One short phrase for any number of segments (a long text has hundreds): never the whole list."""
    if not codes:
        return ""
    if len(codes) == 1:
        return f"1 segment, {codes[0]} codes"
    s = sorted(codes)
    if s[0] == s[-1]:
        return f"{len(codes)} segments, {sum(codes)} codes: {s[0]} per segment"
    return (f"{len(codes)} segments, {sum(codes)} codes: {s[0]}-{s[-1]} per segment, median "
            f"{s[len(s) // 2]}")


def _print_report(rep: dict, out: Path) -> None:
    what = codes_summary(rep.get("codes_per_segment") or [])
    typer.echo(f"wrote {out} ({_duration(rep['audio_seconds'])} of audio" + (f"; {what})" if what else ")"))
    if rep.get("speaker"):
        typer.echo(f"speaker: {rep['speaker']}")
    typer.echo(f"backend: {rep['backend']}; models loaded in {rep['load_seconds']:.2f} s from "
               f"{rep.get('engine_dir') or rep.get('checkpoints')}")
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
