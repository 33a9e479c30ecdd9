"""``tts-serve``: an OpenAI-compatible speech server on Ray Serve, batching requests together.

- ``api.py``: the request body and its rules (the runtime's own, renamed to the API's fields);
- ``service.py``: one replica's pipeline, scheduler (``runtime/scheduler.py``) and saved voices;
- ``http.py``: status codes, error bodies, whole and streamed audio (``audio_out.py``);
- ``ray_app.py``: the Ray Serve deployment (FastAPI ingress); ``cli.py``: the command.

Nothing here imports torch; ``ray``/``fastapi`` come with the ``serve`` extra.
"""
