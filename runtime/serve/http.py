"""HTTP handling of the speech service: status codes, error bodies, streamed and whole audio.

Engine-independent (Starlette requests and responses; ``ray_app.py`` routes to these). Errors
are OpenAI-shaped (``{"error": {"message", "type", "param"}}``) and one line:

| what | status |
|---|---|
| a broken rule of a field, an unknown field, a limit (``OptionError``, ``UsageError``) | 400, ``param`` names the field |
| an unreadable or too short audio, a damaged or foreign saved voice (other ``UserError``) | 400 |
| no such saved voice to delete / one exists already | 404 / 409 |
| the queue is full | 429 at once, with ``Retry-After`` |
| still loading, failed to load, shutting down | 503 |
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ..errors import OptionError, UsageError, UserError
from ..scheduler import Overloaded
from .api import FORMATS, api_error, parse_speech
from .audio_out import encode, pcm_bytes, wav_stream_header
from .service import Conflict, NotFound, NotReady, TTSService

log = logging.getLogger(__name__)
JSON_OVERHEAD = 64 << 10  # bytes a speech request may have besides its base64 emotion audio


def error_response(e: BaseException) -> JSONResponse:
    if isinstance(e, OptionError):  # raised by the runtime's rules: spelled as the request spells it
        e = api_error(e)
    param = getattr(e, "field", None)
    if isinstance(e, NotFound):
        status, kind = 404, "not_found_error"
    elif isinstance(e, Conflict):
        status, kind = 409, "conflict_error"
    elif isinstance(e, (UsageError, UserError)):
        status, kind = 400, "invalid_request_error"
    elif isinstance(e, Overloaded):
        status, kind = 429, "rate_limit_error"
    elif isinstance(e, NotReady):
        status, kind = 503, "unavailable_error"
    else:
        log.error("internal error: %s: %s", type(e).__name__, e, exc_info=e)
        status, kind = 500, "server_error"
        e = RuntimeError(f"internal error: {type(e).__name__}: {e}")
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    body = {"error": {"message": " ".join(str(e).split()), "type": kind, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The body, refused before it is read when it declares more than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise OptionError(what, f"{declared} bytes", f"is over the limit of {limit} bytes (--max-upload-mb)")
    body = await request.body()
    if len(body) > limit:
        raise OptionError(what, f"{len(body)} bytes", f"is over the limit of {limit} bytes (--max-upload-mb)")
    return body


async def speech(service: TTSService, request: Request) -> Response:
    try:
        service.check_ready()
        limit = service.cfg.limits.max_upload_bytes * 4 // 3 + JSON_OVERHEAD
        raw = await read_body(request, limit, "body")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise UsageError(f"the request body is not JSON: {e}") from None
        req = parse_speech(body, service.models, service.cfg.limits)
        chunks = await service.speak(req)
    except Exception as e:  # noqa: BLE001 - every refusal is an error body
        return error_response(e)
    sr = service.pipe.sample_rate
    headers = {"X-Sample-Rate": str(sr)}
    if req.stream:
        return StreamingResponse(_stream(chunks, req.response_format, sr), media_type=FORMATS[req.response_format],
                                 headers=headers)
    parts = []
    try:
        async for pcm in chunks:
            parts.append(pcm)
    except Exception as e:  # noqa: BLE001 - a failure after the first audio (nothing was sent yet)
        return error_response(e)
    import numpy as np

    pcm = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    data = await asyncio.to_thread(encode, pcm, sr, req.response_format)
    headers["X-Audio-Seconds"] = f"{pcm.size / sr:.3f}"
    return Response(data, media_type=FORMATS[req.response_format], headers=headers)


async def _stream(chunks, fmt: str, sr: int):
    if fmt == "wav":
        yield wav_stream_header(sr)
    try:
        async for pcm in chunks:
            yield pcm_bytes(pcm)
    except Exception as e:  # noqa: BLE001 - the status is sent: end the stream and log why
        log.error("stream ended early: %s: %s", type(e).__name__, e)
    finally:
        await chunks.aclose()  # a client that went away cancels the request and frees its rows


async def save_voice(service: TTSService, request: Request, name: str) -> Response:
    try:
        service.check_ready()
        audio = await read_body(request, service.cfg.limits.max_upload_bytes, "audio")
        overwrite = request.query_params.get("overwrite", "false").lower() in ("1", "true", "yes")
        return JSONResponse(await service.save_voice(name, audio, overwrite), status_code=201)
    except Exception as e:  # noqa: BLE001
        return error_response(e)


def delete_voice(service: TTSService, name: str) -> Response:
    try:
        service.delete_voice(name)
        return Response(status_code=204)
    except Exception as e:  # noqa: BLE001
        return error_response(e)


def ready(service: TTSService) -> Response:
    try:
        service.check_ready()
        return JSONResponse({"ready": True})
    except NotReady as e:
        return error_response(e)


def metrics(service: TTSService) -> Response:
    return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4")


__all__ = ["speech", "save_voice", "delete_voice", "ready", "metrics", "error_response"]
