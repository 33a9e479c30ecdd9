"""The serving scheduler: continuous batching of many requests over one pipeline.

One worker thread owns the pipeline (its runners are not thread-safe) and loops in *ticks*:
admit waiting requests (at most ``max_active`` in flight), advance every request to its next
batchable work item (``batching.py``), run one GPT decode step over every decode row and the DiT
steps in batches, send each request its rows back. Requests join and leave between ticks, each
with its own beams, positions, stop state, sampling RNG and CFM noise, so what a request
produces does not depend on what else is in flight (tested).

Bounded: at most ``max_queue`` requests wait beyond those in flight; one more is refused at once
(:class:`Overloaded`), never queued without bound. A cancelled request (a client that went away)
leaves at the next tick and frees its rows. Events reach the caller through ``on_event(kind,
payload)``, called on the worker thread: ``("audio", int16 array)``, ``("done", stats)``,
``("error", exception)``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future

import numpy as np

from .audio import to_int16
from .batching import Audio, DecodeBatch, DecodeStep, DitStep, JoinDecode, dit_batches, run_dit
from .errors import OptionError
from .options import DEFAULTS, RunOptions
from .streaming import ChunkPlan

log = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The queue is full (or the scheduler is shutting down): try again later (HTTP 429/503)."""


class Cancelled(RuntimeError):
    """The request was cancelled before it finished."""


class Job:
    """One request in the scheduler. ``cancel()`` is safe from any thread."""

    def __init__(self, steps, options: RunOptions, sample_rate: int, on_event=None):
        self.steps, self.options, self.sample_rate = steps, options, sample_rate
        self._events: queue.Queue | None = None
        if on_event is None:
            self._events = queue.Queue()
            on_event = lambda kind, payload: self._events.put((kind, payload))  # noqa: E731
        self.on_event = on_event
        self.t_submit, self.t_start, self.t_first = time.perf_counter(), None, None
        self.samples = 0
        self.pending = None  # the work item it waits on
        self.reply = None  # what the next advance sends it
        self.started = False
        self._cancel = threading.Event()
        self._segment, self._emitted = None, False
        self._done = None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _audio(self, piece: Audio) -> None:
        """Pass a piece on as int16, with the interval silence before a later segment's first piece
        (as ``Pipeline.stream``)."""
        if piece.segment != self._segment:
            self._segment = piece.segment
            if self._emitted and self.options.interval_silence_ms:
                self._send(np.zeros(int(self.sample_rate * self.options.interval_silence_ms / 1000.0), np.int16))
            self._emitted = True
        if piece.wav.size:
            self._send(to_int16(piece.wav))

    def _send(self, pcm: np.ndarray) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        self.samples += pcm.size
        self.on_event("audio", pcm)

    def stats(self) -> dict:
        end = time.perf_counter()
        audio_s = self.samples / self.sample_rate
        started = self.t_start or end
        return {"queue_s": started - self.t_submit, "time_to_first_audio_s": (self.t_first or end) - self.t_submit,
                "wall_s": end - self.t_submit, "audio_s": audio_s,
                "rtf": (end - started) / audio_s if audio_s else None}

    # ---- for callers without an event callback (tests, scripts)

    def chunks(self, timeout: float | None = None):
        """The int16 chunks as they come; raises the request's error."""
        if self._events is None:
            raise RuntimeError("this job reports through its on_event callback")
        while True:
            kind, payload = self._events.get(timeout=timeout)
            if kind == "audio":
                yield payload
            elif kind == "error":
                raise payload
            else:
                self._done = payload
                return

    def result(self, timeout: float | None = None) -> np.ndarray:
        parts = list(self.chunks(timeout))
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    @property
    def done_stats(self) -> dict | None:
        """The "done" event's payload (timings, each segment's codes) once :meth:`chunks` ended."""
        return self._done


class Scheduler:
    """Continuous batching over ``pipe`` (a pipeline whose variant has ``batched_request``)."""

    def __init__(self, pipe, *, max_active: int | None = None, max_queue: int = 16, max_rows: int | None = None,
                 metrics=None):
        if not hasattr(pipe, "batched_request"):
            raise TypeError(f"{type(pipe).__name__} has no batched_request: this model variant cannot be served")
        from .metrics import Metrics

        self.pipe = pipe
        dit_max = pipe.specs["dit_step"].dim_map["B"].max
        self.max_active = dit_max if max_active is None else max_active
        if not 1 <= self.max_active <= dit_max:  # each request in flight has at most one DiT step pending
            raise OptionError("max_active", max_active, f"must be in [1, {dit_max}] (the DiT step's batch range)")
        if not (isinstance(max_queue, int) and max_queue >= 0):
            raise OptionError("max_queue", max_queue, "must be an integer >= 0")
        self.max_queue, self.dit_max = max_queue, dit_max
        self.decode = DecodeBatch(pipe, max_rows)
        self.metrics = metrics or Metrics()
        self._cv = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active: list[Job] = []
        self._calls: deque = deque()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="tts-scheduler", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers (any thread)

    def submit(self, text: str, speaker, *, emotion_audio=None, options: RunOptions = DEFAULTS,
               chunk: ChunkPlan | None = None, on_event=None) -> Job:
        """Queue a request; raises :class:`Overloaded` at once when the queue is full, and the
        options' own errors (``OptionError``) before queueing."""
        if not isinstance(options, RunOptions):
            raise OptionError("options", options, "must be a RunOptions")
        options = options.check_request(emotion_audio)
        if options.sampling.num_beams > self.decode.max_rows:
            raise OptionError("num_beams", options.sampling.num_beams,
                              f"must be at most {self.decode.max_rows} (the decode batch's rows)")
        if chunk is not None and not isinstance(chunk, ChunkPlan):
            raise OptionError("chunk", chunk, "must be a ChunkPlan (or None: per-segment streaming)")
        steps = self.pipe.batched_request(text, speaker, emotion_audio, options, chunk)
        job = Job(steps, options, self.pipe.sample_rate, on_event)
        with self._cv:
            if self._stop:
                raise Overloaded("the server is shutting down")
            if len(self._active) + len(self._waiting) >= self.max_active + self.max_queue:
                self.metrics.count("rejected")
                raise Overloaded(f"{len(self._active)} requests in flight and {len(self._waiting)} waiting: the queue "
                                 f"holds {self.max_queue} (--max-queue)")
            self._waiting.append(job)
            self._cv.notify()
        return job

    def call(self, fn) -> Future:
        """Run ``fn(pipe)`` on the worker between ticks (saving a voice, a warm-up)."""
        fut: Future = Future()
        with self._cv:
            if self._stop:
                raise Overloaded("the server is shutting down")
            self._calls.append((fn, fut))
            self._cv.notify()
        return fut

    def cancel(self, job: Job) -> None:
        job.cancel()
        with self._cv:
            self._cv.notify()

    def load(self) -> dict:
        with self._cv:
            return {"queued": len(self._waiting), "active": len(self._active), "rows": self.decode.rows_in_use}

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new work, cancel what is in flight, stop the worker (the pipeline stays open)."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the worker

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self._stop or self._waiting or self._active or self._calls):
                    self._cv.wait()
                if self._stop:
                    break
                calls = list(self._calls)
                self._calls.clear()
                for job in [j for j in self._waiting if j.cancelled]:
                    self._waiting.remove(job)
                    self._finish(job, Cancelled("cancelled while queued"))
                while self._waiting and len(self._active) < self.max_active:
                    job = self._waiting.popleft()
                    job.t_start = time.perf_counter()
                    self._active.append(job)
                self.metrics.gauge("queue_depth", len(self._waiting))
                self.metrics.gauge("active", len(self._active))
            for fn, fut in calls:
                try:
                    fut.set_result(fn(self.pipe))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(e)
            try:
                self._tick()
            except Exception as e:  # noqa: BLE001 - a batched call failed: fail its requests, keep serving
                log.exception("scheduler tick failed")
                for job in list(self._active):
                    if job.pending is not None:
                        self._drop(job, e)
        with self._cv:
            left = list(self._waiting) + self._active
            self._waiting.clear()
        for job in left:
            self._drop(job, Overloaded("the server shut down before the request finished"))
        self.decode.close()

    def _drop(self, job: Job, error: BaseException) -> None:
        job.steps.close()  # runs the request's finally blocks: its decode rows are released
        if job in self._active:
            self._active.remove(job)
        self._finish(job, error)

    def _finish(self, job: Job, error: BaseException | None, result: dict | None = None) -> None:
        st = {**job.stats(), **(result or {})}
        if error is None:
            self.metrics.count("ok")
            self.metrics.observe("time_to_first_audio_s", st["time_to_first_audio_s"])
            if st["rtf"] is not None:
                self.metrics.observe("rtf", st["rtf"])
            self.metrics.observe("request_s", st["wall_s"])
            job.on_event("done", st)
        else:
            self.metrics.count("cancelled" if isinstance(error, Cancelled) else "failed")
            job.on_event("error", error)

    def _advance(self, job: Job) -> None:
        """Run the request until it waits on a batched step (or ends)."""
        value, job.reply = job.reply, None
        while True:
            try:
                item = job.steps.send(value) if job.started else next(job.steps)
                job.started = True
            except StopIteration as done:
                self._active.remove(job)
                self._finish(job, None, done.value)
                return
            except Exception as e:  # noqa: BLE001 - the request's own error (bad text, voice, ...)
                self._active.remove(job)
                self._finish(job, e)
                return
            value = None
            if isinstance(item, Audio):
                job._audio(item)
            elif isinstance(item, JoinDecode) and self._may_join(job, item):
                value = self.decode.join(item.kv0, item.rows)
            else:
                job.pending = item
                return

    def _may_join(self, job: Job, item: JoinDecode) -> bool:
        """First come, first served: a request waits for rows while an earlier one does."""
        for other in self._active:
            if other is job:
                break
            if isinstance(other.pending, JoinDecode):
                return False
        return self.decode.can_join(item.rows)

    def _tick(self) -> None:
        for job in [j for j in self._active if j.cancelled]:
            self._drop(job, Cancelled("cancelled"))
        for job in list(self._active):
            if isinstance(job.pending, JoinDecode) and self._may_join(job, job.pending):
                job.reply, job.pending = self.decode.join(job.pending.kv0, job.pending.rows), None
            if job.pending is None:
                self._advance(job)
        if self.decode.rows_in_use == 0:
            self.decode.close()  # nothing decodes: free the cache
        decodes = [j for j in self._active if isinstance(j.pending, DecodeStep)]
        if decodes:
            logits = self.decode.step([j.pending for j in decodes])
            self.metrics.observe("decode_rows", self.decode.rows)
            self.metrics.observe("decode_requests", len(decodes))
            for job, out in zip(decodes, logits):
                job.reply, job.pending = out, None
        dits = [j for j in self._active if isinstance(j.pending, DitStep)]
        for idx in dit_batches([j.pending for j in dits], self.dit_max):
            outs = run_dit(self.pipe, [dits[i].pending for i in idx])
            self.metrics.observe("dit_batch", len(idx))
            for i, out in zip(idx, outs):
                dits[i].reply, dits[i].pending = out, None


__all__ = ["Scheduler", "Job", "Overloaded", "Cancelled"]
