"""The speech service as a Ray Serve deployment behind Ray's HTTP proxy (FastAPI ingress).

Each replica is one process with its own pipeline and scheduler (the batching happens inside a
replica, across the requests it holds: ``runtime/scheduler.py``); Ray's proxy spreads requests
over replicas, on this machine or on every machine of a Ray cluster (``tts-serve --ray-address``).
``max_ongoing_requests`` is set above what a replica admits plus its queue, so Ray never queues
in front of it and an overloaded replica answers 429 at once (its own bounded queue).
"""

# no `from __future__ import annotations`: FastAPI reads the route parameters' annotations at
# import, and a string "Request" inside Ray's ingress wrapper would become a query parameter
import logging

from fastapi import FastAPI, Request
from ray import serve

from . import http
from .service import ServeConfig, TTSService

app = FastAPI(title="indextts-trt speech server", docs_url=None, redoc_url=None)


@serve.deployment(name="speech", ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class SpeechServer:
    def __init__(self, cfg: ServeConfig, log_level: str = "WARNING"):
        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
        self.service = TTSService(cfg)

    @app.post("/v1/audio/speech")
    async def speech(self, request: Request):
        return await http.speech(self.service, request)

    @app.get("/v1/models")
    def models(self):
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "indextts-trt"}
                                           for m in self.service.models]}

    @app.get("/v1/voices")
    def list_voices(self):
        return {"voices": self.service.list_voices()}

    @app.post("/v1/voices/{name}")
    async def save_voice(self, name: str, request: Request):
        return await http.save_voice(self.service, request, name)

    @app.delete("/v1/voices/{name}")
    def delete_voice(self, name: str):
        return http.delete_voice(self.service, name)

    @app.get("/health")
    def health(self):
        return self.service.health()

    @app.get("/ready")
    def ready(self):
        return http.ready(self.service)

    @app.get("/metrics")
    def metrics(self):
        return http.metrics(self.service)

    def __del__(self):  # Ray Serve calls it when the replica stops: free sessions, caches, temp files
        self.service.close()


def bind(cfg: ServeConfig, *, replicas: int = 1, gpus_per_replica: float = 0.0, log_level: str = "WARNING"):
    """The application ``serve.run`` takes; ``gpus_per_replica`` 1 places one replica per GPU of
    the cluster (Ray sets each one's CUDA_VISIBLE_DEVICES)."""
    per_replica = (cfg.max_active or 8) + cfg.max_queue + 16  # above the replica's own bound: it answers 429
    return SpeechServer.options(num_replicas=replicas, max_ongoing_requests=per_replica,
                                ray_actor_options={"num_cpus": 0, "num_gpus": gpus_per_replica}).bind(cfg, log_level)


__all__ = ["SpeechServer", "bind", "app"]
