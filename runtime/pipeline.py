"""The torch-free pipeline: a thin sequencer over the stage runners of an engines directory.

:class:`Pipeline` does what every model variant shares: it reads the manifest (the contract with
the build), finds the variant that built the directory, checks every stage against the variant's
spec, picks the backend, opens one :class:`~.runners.StageRunner` per stage on first use and frees
them all in :meth:`close`. It turns a request into segments, runs them and joins their audio with
the interval silence, whole or streamed, and saves and loads voices. How the stages follow each
other within a request is the variant's: its pipeline subclass implements :meth:`prepare`,
:meth:`segment` and :meth:`segment_chunks` (see ``indextts2/pipeline.py``). Nothing here imports
torch.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .audio import to_int16
from .engine_plan import load_plan
from .errors import OptionError, UserError
from .manifest import (MANIFEST, IntegrityError, ManifestError, load_manifest, mixed_checkpoints, stage_files,
                       verify_files)
from .numerics import is_int
from .options import DEFAULTS, RunOptions
from .results import Result, Segment
from .runners import BackendError, StageRunner, choose_backend, open_runner
from .streaming import ChunkPlan
from .variant import VariantError, get_variant
from .workdirs import build_command, rebuild_hint

log = logging.getLogger(__name__)
MAX_THREADS = 1024  # ONNX Runtime's intra-op threads; more than any machine's cores


class EngineError(UserError, RuntimeError):
    """An engines directory cannot serve: missing, from another spec or build, or failed parity."""


class Pipeline:
    """The generic part; use :func:`open_pipeline` to get the variant's pipeline for a directory."""

    voice_stages: tuple[str, ...] = ()  # the stages whose outputs a saved voice stores
    sample_rate: int = 22050

    def __init__(self, engine_dir: str | Path, *, backend: str = "ort", providers=None, threads: int | None = None,
                 precision: str = "fp32"):
        check_open_options(backend, providers, threads, precision)
        self.precision = precision
        self.dir = Path(engine_dir)
        try:
            self.manifest = load_manifest(self.dir)
            self.variant = get_variant(self.manifest["variant"])
        except (ManifestError, VariantError) as e:
            raise EngineError(str(e)) from None
        self._verify_host_files()
        self.cfg = self.variant.load_config(self.dir / "config.yaml")
        self.specs = self.variant.stage_specs(self.cfg)
        self._check_stages()
        self._check_precision()
        self.providers, self.threads = providers, threads
        try:
            self.backend, self.backend_reason = choose_backend(self.dir, self.manifest, list(self.specs), backend,
                                                               precision)
        except BackendError as e:
            raise EngineError(str(e)) from None
        try:
            self.plan = load_plan(self.dir) if self.backend == "trt" else None
        except (ValueError, OSError) as e:  # missing, not JSON, or a newer schema: the directory's problem
            raise EngineError(f"TensorRT build plan: {' '.join(str(e).split())}") from None
        self._runners: dict[str, StageRunner] = {}

    def _verify_host_files(self) -> None:
        """The files besides the graphs (config, tokenizer, host tensors), against the manifest."""
        hashes = self.manifest.get("host_files") or {}
        unrecorded = [f for f in self.variant.host_files if f not in hashes]
        if unrecorded:
            raise IntegrityError(f"{self.dir / MANIFEST} records no hash for {', '.join(unrecorded)}: the build did "
                                 f"not finish; {rebuild_hint(self.dir, self.manifest)}")
        verify_files(self.dir, {f: hashes[f] for f in self.variant.host_files}, self.manifest.get("host_sizes"))

    def _check_stages(self) -> None:
        missing = [s for s in self.specs if s not in self.manifest["stages"]]
        if missing:
            raise EngineError(f"{self.dir} lacks stage(s) {', '.join(missing)}: "
                              f"{rebuild_hint(self.dir, self.manifest)}")
        for name, spec in self.specs.items():
            st = self.manifest["stages"][name]
            if st.get("graph_key") != spec.graph_key():
                raise EngineError(f"stage {name} in {self.dir} was built for another spec (graph key "
                                  f"{st.get('graph_key')} vs {spec.graph_key()} from its config.yaml): "
                                  f"{rebuild_hint(self.dir, self.manifest)}")
            if not (st.get("parity") or {}).get("passed"):
                raise EngineError(f"stage {name} in {self.dir} did not pass parity; "
                                  f"{rebuild_hint(self.dir, self.manifest)}")
        mixed = mixed_checkpoints(self.manifest)
        if mixed:
            raise IntegrityError(f"{self.dir} mixes two builds: {mixed}; rebuild every stage from one checkpoint "
                                 f"directory: {rebuild_hint(self.dir, self.manifest)}")

    def _check_precision(self) -> None:
        """Every stage has a gated graph at the requested precision (ONNX Runtime), or the engines
        were built at it (TensorRT: checked when the backend is chosen)."""
        if self.precision == "fp32":
            return
        missing = [s for s in self.specs if self.precision not in (self.manifest["stages"][s].get("graphs") or {})]
        if missing:
            raise EngineError(f"{self.dir} has no {self.precision} graph for {', '.join(missing)}: make them with "
                              f"`{build_command(self.dir, self.manifest, precision=self.precision)}`")
        ungated = [s for s in self.specs
                   if not (self.manifest["stages"][s]["graphs"][self.precision].get("parity") or {}).get("passed")]
        if ungated:
            raise EngineError(f"the {self.precision} graphs of {', '.join(ungated)} in {self.dir} were not gated on "
                              f"parity (ONNX Runtime's CPU provider cannot run {self.precision}); run them as "
                              f"TensorRT engines, which the build gates on the GPU")

    # ------------------------------------------------------------------ runners

    def stage(self, name: str) -> StageRunner:
        """The stage's runner, opened on first use after its files were checked against the
        manifest (sizes at every open, hashes once per process: ``manifest.verify_files``)."""
        if name not in self._runners:
            entry = self.manifest["stages"][name]
            verify_files(self.dir, *stage_files(entry, self.backend, self.precision))
            plan = self.plan["stages"][name] if self.plan else None
            self._runners[name] = open_runner(self.backend, self.dir, entry, self.specs[name], precision=self.precision,
                                              plan_entry=plan, providers=self.providers, threads=self.threads)
        return self._runners[name]

    def run(self, name: str, *, cache=None, feedback=None, fetch=None, **feed: np.ndarray) -> dict[str, np.ndarray]:
        """Run stage ``name`` on ``feed`` after checking the request against its ranges (an error
        names the stage, the dim and both numbers); the keywords go to ``StageRunner.run``."""
        spec = self.specs[name]
        spec.check_sizes(spec.sizes_of(feed))
        return self.stage(name).run(feed, cache=cache, feedback=feedback, fetch=fetch)

    def stage_precision(self, name: str) -> str:
        """The precision stage ``name`` actually runs in (an fp16 request may keep a stage fp32)."""
        from .manifest import stage_graph

        entry = self.manifest["stages"][name]
        return entry["trt"]["precision"] if self.backend == "trt" else stage_graph(entry, self.precision)["precision"]

    @property
    def providers_in_use(self) -> list[str]:
        return sorted({r.provider for r in self._runners.values()})

    def close(self) -> None:
        """Free every runner (sessions, device buffers, caches). The pipeline can be reopened
        stage by stage afterwards: a later call opens the runners it needs again."""
        for r in self._runners.values():
            r.close()
        self._runners.clear()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def synthesize(self, text: str, speaker, *, emotion_audio=None, options: RunOptions = DEFAULTS,
                   progress: bool = False) -> Result:
        secs: dict[str, float] = defaultdict(float)
        out = list(self.iter_segments(text, speaker, emotion_audio=emotion_audio, options=options, progress=progress,
                                      seconds=secs))
        from .audio import join_segments

        wav = join_segments([s.wav for s in out], options.interval_silence_ms, self.sample_rate)
        return Result(wav, self.sample_rate, out, dict(secs))

    def iter_segments(self, text: str, speaker, *, emotion_audio=None, options: RunOptions = DEFAULTS,
                      progress: bool = False, seconds: dict | None = None) -> Iterator[Segment]:
        secs = seconds if seconds is not None else defaultdict(float)
        options = self.checked_options(options, emotion_audio)
        from .progress import busy

        # a long text's normalization runs minutes without a step to count: show the time from the start
        with busy(f"text ({len(text) if isinstance(text, str) else 0} characters) and speaker conditioning",
                  enabled=progress):
            request = self.prepare(text, speaker, emotion_audio, options, secs)
        from tqdm import tqdm

        for i in tqdm(range(len(request.segments)), desc="segments", unit="seg", disable=not progress):
            seg = self.segment(request, i, options, secs)
            if seg is None:
                log.warning("segment %d: the GPT stopped before any code; skipping it", i)
                continue
            yield seg

    def stream(self, text: str, speaker, *, emotion_audio=None, options: RunOptions = DEFAULTS,
               chunk: ChunkPlan | None = None, seconds: dict | None = None) -> Iterator[np.ndarray]:
        """Yields int16 audio chunks as soon as they exist; segments are separated by the same
        silence as ``synthesize``.

        ``chunk=None``: per-segment streaming, one chunk per segment; the concatenation equals
        ``synthesize(...).wav`` exactly. ``options.quick_streaming_tokens`` keeps the first segment
        short (upstream's knob).
        ``chunk=ChunkPlan(100, 20)``: code-chunk streaming within a segment (see ``streaming.py``):
        audio starts after ``chunk_codes`` committed codes instead of after the whole segment; the
        codes are the non-streamed ones, the audio an approximation of it (exact with one window).
        """
        secs = seconds if seconds is not None else defaultdict(float)
        options = self.checked_options(options, emotion_audio)
        if chunk is not None and not isinstance(chunk, ChunkPlan):
            raise OptionError("chunk", chunk, "must be a ChunkPlan (or None: per-segment streaming)")
        sil = np.zeros(int(self.sample_rate * options.interval_silence_ms / 1000.0), np.int16)
        request = self.prepare(text, speaker, emotion_audio, options, secs)
        emitted = False
        for i in range(len(request.segments)):
            if chunk is not None:
                parts = self.segment_chunks(request, i, options, chunk, secs)
            else:
                seg = self.segment(request, i, options, secs)
                parts = iter(()) if seg is None else iter((seg.wav,))
            first = True
            for wav in parts:
                if first and emitted and sil.size:
                    yield sil
                first, emitted = False, True
                if wav.size:
                    yield to_int16(wav)

    def checked_options(self, options: RunOptions, emotion_audio) -> RunOptions:
        """The request's options as the variant's options class (its fields' rules: a field the
        variant lacks is an OptionError), then the rules that join them with the request."""
        return self.variant.request_options(options).check_request(emotion_audio)

    # ------------------------------------------------------------------ what a variant implements

    def prepare(self, text: str, speaker, emotion_audio, options: RunOptions, secs: dict):
        """Text → segments, speaker (and emotion) → conditioning. Returns a request object with a
        ``segments`` list that :meth:`segment` takes by index."""
        raise NotImplementedError

    def segment(self, request, i: int, options: RunOptions, secs: dict) -> Segment | None:
        """Synthesize segment ``i`` whole (None when it has no codes)."""
        raise NotImplementedError

    def segment_chunks(self, request, i: int, options: RunOptions, chunk: ChunkPlan, secs: dict
                       ) -> Iterator[np.ndarray]:
        """Float audio pieces of segment ``i``, synthesized window by window while codes are made."""
        raise NotImplementedError

    def voice_tensors(self, speaker) -> dict[str, np.ndarray]:
        """The conditioning of a speaker prompt, as the tensors a saved voice stores."""
        raise NotImplementedError

    def voice_from_tensors(self, tensors: dict[str, np.ndarray]):
        """The inverse of :meth:`voice_tensors`: what :meth:`prepare` accepts as ``speaker``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ saved voices

    def voice_origin(self) -> dict:
        """What a saved voice depends on: the graphs of the stages that computed it, and the backend
        and precision that ran them."""
        from .voices import voice_origin

        return voice_origin(self.manifest, self.voice_stages, self.backend,
                            {s: self.stage_precision(s) for s in self.voice_stages})

    def save_voice(self, voices_dir: str | Path, name: str, speaker):
        from .voices import check_voice_name, save_voice

        check_voice_name(name, "name")  # before the stages run, not after
        tensors = self.voice_tensors(speaker)
        save_voice(voices_dir, name, tensors, self.voice_origin(), str(speaker))
        return self.voice_from_tensors(tensors)

    def load_voice(self, voices_dir: str | Path, name: str):
        from .voices import load_voice

        return self.voice_from_tensors(load_voice(voices_dir, name, self.voice_origin()))


def open_pipeline(engine_dir: str | Path, **kw) -> Pipeline:
    """The pipeline of the model variant that built ``engine_dir``."""
    check_open_options(kw.get("backend", "ort"), kw.get("providers"), kw.get("threads"), kw.get("precision", "fp32"))
    try:
        variant = get_variant(load_manifest(engine_dir)["variant"])
    except (ManifestError, VariantError) as e:
        raise EngineError(str(e)) from None
    return variant.pipeline_class()(engine_dir, **kw)


PRECISIONS = ("fp32", "fp16", "bf16", "int8")
ORT_ONLY = ("int8",)  # graphs TensorRT does not build: its int8 needs Q/DQ calibration, which the build does not do


def check_open_options(backend, providers, threads, precision="fp32") -> None:
    """The rules of what opening a pipeline takes (the CLI's --backend, --ort-provider, --threads,
    --precision)."""
    from .runners import BACKENDS

    if precision not in PRECISIONS:
        raise OptionError("precision", precision, f"use {', '.join(PRECISIONS)}")
    if precision in ORT_ONLY and backend == "trt":
        raise OptionError("precision", precision, "int8 graphs run on ONNX Runtime only (--backend ort or auto): "
                          "TensorRT's int8 needs Q/DQ calibration, which `tts-export build` does not do")
    if backend not in BACKENDS:
        raise OptionError("backend", backend, f"use {', '.join(BACKENDS)}")
    if providers is not None and (isinstance(providers, str) or not all(isinstance(p, str) for p in providers)):
        raise OptionError("providers", providers, "must be a list of ONNX Runtime provider names")
    if threads is not None and not (is_int(threads) and 0 <= threads <= MAX_THREADS):
        raise OptionError("threads", threads, f"must be an integer in [0, {MAX_THREADS}] (0 or None: all cores)")


def timed(secs: dict, key: str):
    """``with timed(secs, 'bigvgan'):`` adds the block's wall time to ``secs[key]``."""
    return _Timer(secs, key)


class _Timer:
    def __init__(self, secs: dict, key: str):
        self.secs, self.key = secs, key

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.secs[self.key] += time.perf_counter() - self.t0


__all__ = ["Pipeline", "open_pipeline", "check_open_options", "EngineError", "Segment", "Result", "timed", "MAX_THREADS"]
