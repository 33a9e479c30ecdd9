"""The speech service one server replica runs: a pipeline, its scheduler, the saved voices.

Independent of the serving engine (``ray_app.py`` puts it behind Ray Serve's HTTP proxy): it
loads in the background (``ready`` says when), takes parsed requests (``api.py``) and gives
their audio as an async stream of int16 chunks. Everything that runs a stage runs on the
scheduler's worker thread (``Scheduler.call``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OptionError, UserError
from ..voices import check_voice_name
from .api import DEFAULT_VOICE, Limits, SpeechRequest

log = logging.getLogger(__name__)
VOICE_CACHE = 64  # loaded saved voices kept in memory


class NotReady(RuntimeError):
    """The service is still loading (or failed to): HTTP 503."""


class Conflict(UserError):
    """A saved voice of that name exists (HTTP 409)."""


class NotFound(UserError):
    """No saved voice of that name (HTTP 404)."""


@dataclass(frozen=True)
class ServeConfig:
    engine_dir: str
    voices_dir: str | None = None  # default: ENGINE_DIR/voices
    backend: str = "auto"
    threads: int | None = None
    max_active: int | None = None  # default: the DiT step's batch maximum
    max_queue: int = 16
    limits: Limits = field(default_factory=Limits)
    model_names: tuple[str, ...] = ()  # default: the variant's name
    warmup: bool = True


class TTSService:
    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.voices_dir = Path(cfg.voices_dir or Path(cfg.engine_dir) / "voices")
        self.pipe = self.scheduler = None
        self.models: tuple[str, ...] = cfg.model_names
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.started = time.time()
        self._tmp = Path(tempfile.mkdtemp(prefix="tts-serve-"))
        self._voices: OrderedDict[str, object] = OrderedDict()
        self._loader = threading.Thread(target=self._load, name="tts-load", daemon=True)
        self._loader.start()

    # ------------------------------------------------------------------ lifecycle

    def _load(self) -> None:
        try:
            from ..audio import SR_22K, write_wav_int16
            from ..demo_audio import synth_voice_prompt
            from ..options import RunOptions
            from ..pipeline import open_pipeline
            from ..scheduler import Scheduler

            self.pipe = open_pipeline(self.cfg.engine_dir, backend=self.cfg.backend, threads=self.cfg.threads)
            self.models = self.models or (self.pipe.manifest["variant"],)
            self.scheduler = Scheduler(self.pipe, max_active=self.cfg.max_active, max_queue=self.cfg.max_queue)
            demo = self._tmp / "default_voice.wav"  # tts-run's built-in prompt, as voice "default"
            write_wav_int16(demo, synth_voice_prompt(3.0, SR_22K, seed=1), SR_22K)
            self._voices[DEFAULT_VOICE] = self.scheduler.call(lambda p: p.speaker(demo)).result()
            if self.cfg.warmup:  # every stage opened once, so the first request does not pay for it
                opts = RunOptions(diffusion_steps=1).replace(sampling=RunOptions().sampling.replace(max_new_tokens=2))
                self.scheduler.submit("Warm up.", self._voices[DEFAULT_VOICE], options=opts).result()
            self.ready.set()
            log.info("ready: %s on %s", self.cfg.engine_dir, self.pipe.backend)
        except Exception as e:  # noqa: BLE001 - reported by /ready and every request
            self.load_error = " ".join(f"{type(e).__name__}: {e}".split()) if not isinstance(e, UserError) else str(e)
            log.error("cannot serve %s: %s", self.cfg.engine_dir, self.load_error)

    def check_ready(self) -> None:
        if not self.ready.is_set():
            raise NotReady(f"cannot serve: {self.load_error}" if self.load_error else "still loading the engines")

    def health(self) -> dict:
        import os
        import sys

        load = self.scheduler.load() if self.scheduler else {}
        return {"status": "ok", "ready": self.ready.is_set(), "error": self.load_error,
                "engine_dir": str(self.cfg.engine_dir), "backend": getattr(self.pipe, "backend", None),
                "models": list(self.models), "uptime_s": time.time() - self.started, "torch_loaded": "torch" in sys.modules,
                "pid": os.getpid(), **load}

    def metrics_text(self) -> str:
        if self.scheduler is None:
            return ""
        load = self.scheduler.load()
        return self.scheduler.metrics.prometheus({"queue_depth": load["queued"], "active": load["active"],
                                                  "decode_rows_in_use": load["rows"]})

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
        if self.pipe is not None:
            self.pipe.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ------------------------------------------------------------------ speech

    async def _on_worker(self, fn):
        return await asyncio.wrap_future(self.scheduler.call(fn))

    async def speaker(self, name: str):
        if name in self._voices:
            self._voices.move_to_end(name)
            return self._voices[name]
        if not (self.voices_dir / f"{name}.json").is_file():
            raise OptionError("voice", name, "no saved voice of that name (GET /v1/voices lists them, POST "
                              "/v1/voices/NAME saves one)")
        cond = await self._on_worker(lambda p: p.load_voice(self.voices_dir, name))
        self._voices[name] = cond
        old = [n for n in self._voices if n != DEFAULT_VOICE]
        for n in old[: max(0, len(old) - VOICE_CACHE)]:  # the least recently used first
            del self._voices[n]
        return cond

    async def speak(self, req: SpeechRequest):
        """Submit ``req``; returns an async iterator of int16 chunks once the first one exists, so
        a request the worker refuses (text over a limit, an unreadable emotion audio) raises here,
        before any response is sent. Closing the iterator early cancels the request."""
        self.check_ready()
        speaker = await self.speaker(req.voice)
        emo = None
        if req.emotion_audio is not None:
            emo = Path(tempfile.mkdtemp(dir=self._tmp)) / "emotion_audio"
            emo.write_bytes(req.emotion_audio)
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        try:
            job = self.scheduler.submit(req.text, speaker, emotion_audio=emo, options=req.options, chunk=req.chunk,
                                        on_event=lambda k, p: loop.call_soon_threadsafe(events.put_nowait, (k, p)))
        except Exception:
            _remove(emo)
            raise
        try:
            first = await _next_event(events, emo)
        except BaseException:  # an error, or the client went away before the first audio
            self.scheduler.cancel(job)
            _remove(emo)
            raise
        return _chunks(first, events, lambda: self.scheduler.cancel(job), emo)

    # ------------------------------------------------------------------ saved voices

    def list_voices(self) -> list[dict]:
        out = [{"name": DEFAULT_VOICE, "builtin": True}]
        for meta in sorted(self.voices_dir.glob("*.json")):
            try:
                info = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            out.append({"name": meta.stem, "builtin": False, "created": info.get("created")})
        return out

    async def save_voice(self, name: str, audio: bytes, overwrite: bool = False) -> dict:
        self.check_ready()
        check_voice_name(name, "name")
        if name == DEFAULT_VOICE:
            raise OptionError("name", name, "'default' is the built-in voice")
        if len(audio) > self.cfg.limits.max_upload_bytes:
            raise OptionError("audio", f"{len(audio)} bytes", f"is over the upload limit of "
                              f"{self.cfg.limits.max_upload_bytes} bytes (--max-upload-mb)")
        if (self.voices_dir / f"{name}.json").exists() and not overwrite:
            raise Conflict(f"voice {name!r} exists: delete it first, or upload with ?overwrite=true")
        src = Path(tempfile.mkdtemp(dir=self._tmp)) / "voice_audio"
        src.write_bytes(audio)
        try:
            cond = await self._on_worker(lambda p: p.save_voice(self.voices_dir, name, src))
        except UserError as e:
            raise type(e)(str(e).replace(str(src), "the upload")) from None
        finally:
            _remove(src)
        self._voices[name] = cond
        return {"name": name, "builtin": False}

    def delete_voice(self, name: str) -> None:
        check_voice_name(name, "name")
        if name == DEFAULT_VOICE:
            raise OptionError("name", name, "the built-in voice cannot be deleted")
        files = [self.voices_dir / f"{name}.json", self.voices_dir / f"{name}.safetensors"]
        if not any(f.exists() for f in files):
            raise NotFound(f"no saved voice {name!r}")
        for f in files:
            f.unlink(missing_ok=True)
        self._voices.pop(name, None)


async def _next_event(events: asyncio.Queue, emo: Path | None):
    kind, payload = await events.get()
    if kind == "error":
        _remove(emo)
        if isinstance(payload, UserError) and emo is not None:
            raise type(payload)(str(payload).replace(str(emo), "emotion_audio")) from None
        raise payload
    return kind, payload


async def _chunks(first, events: asyncio.Queue, cancel, emo: Path | None):
    """The request's int16 chunks; cancels the request when the consumer stops early."""
    kind, payload = first
    try:
        while kind == "audio":
            yield payload
            kind, payload = await events.get()
        if kind == "error":
            raise payload
    finally:
        if kind == "audio":  # the consumer went away (a client that disconnected): free its rows
            cancel()
        _remove(emo)


def _remove(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path.parent, ignore_errors=True)


__all__ = ["TTSService", "ServeConfig", "NotReady", "Conflict", "NotFound"]
