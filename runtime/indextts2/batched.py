"""One IndexTTS-2 request as steps the serving batcher interleaves with other requests' steps.

The same sequence as the serial pipeline (``pipeline.py``: ``stream``, ``segment``,
``segment_chunks``), written as a generator: every GPT decode step and every DiT Euler step is
*yielded* to the scheduler (``runtime/batching.py``), which runs the steps of every request in
flight as one batched call and sends each request its rows back. Everything else (text,
conditioning, prefill, latent pass, S2Mel projections, BigVGAN) runs inline, one request at a time.

What makes a request's output independent of its batch neighbours:
- its own ``BeamSearch`` (own RNG, seeded per segment as ``RunOptions.segment_sampling``) and its
  own CFM noise (``noise_seed``): no random state is shared;
- its decode rows attend only to their own ``cache_len`` positions of the shared cache;
- the DiT masks each row to its own ``x_lens`` (keys, WaveNet convs: ``reference/wavenet.py``).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from ..batching import Audio, DecodeStep, DitStep, JoinDecode
from ..cfm import euler_times, zero_prompt
from ..options import RunOptions
from ..pipeline import timed
from ..streaming import ChunkPlan, Crossfader

log = logging.getLogger(__name__)


def request_steps(pipe, text: str, speaker, emotion_audio, options: RunOptions, chunk: ChunkPlan | None):
    """The request's steps; yields work items and ``Audio`` pieces (float, tagged with their
    segment), returns ``{"codes": [each segment's codes], "seconds": {part: s}}``."""
    secs: dict[str, float] = defaultdict(float)
    options = options.check_request(emotion_audio)
    request = pipe.prepare(text, speaker, emotion_audio, options, secs)
    codes = []
    for i in range(len(request.segments)):
        if chunk is None:
            c = yield from _segment(pipe, request, i, options, secs)
        else:
            c = yield from _segment_chunks(pipe, request, i, options, chunk, secs)
        if len(c):
            codes.append(c)
    return {"codes": codes, "seconds": dict(secs)}


def _generate(pipe, conds: np.ndarray, text: np.ndarray, opts, after_step=None):
    """The decode loop of ``IndexTTS2Pipeline.generate_steps`` over rows of the shared batch
    cache; ``after_step(search)`` (a generator) runs after every sampling step that did not end
    the search. Returns the finished search."""
    st = pipe.generation_start(conds, text, opts)
    search, nb = st.search, st.search.num_beams
    rows = yield JoinDecode(st.kv0, nb)
    try:
        logits = np.repeat(st.logits, nb, axis=0)
        k = 0
        while True:
            tokens, beam_index = search.step(logits)
            k += 1
            if search.done:
                break
            if after_step is not None:
                yield from after_step(search)
            changed = np.nonzero(beam_index != np.arange(nb))[0]
            if changed.size:
                rows.reorder(changed, beam_index[changed])
            logits = yield DecodeStep(rows, pipe.decode_inputs(tokens, k, st.prompt_len))
    finally:
        rows.release()
    return search


def _s2mel(pipe, content, c, options: RunOptions, noise_seed: int, frames: int, frame_offset: int = 0):
    """``IndexTTS2Pipeline.s2mel`` with each Euler step yielded (the batcher pads and batches them)."""
    x, const = pipe.s2mel_inputs(content, c, options, noise_seed, frames, frame_offset)
    x = zero_prompt(x, const["prompt_len"])
    for t, dt in euler_times(options.diffusion_steps):
        x = yield DitStep(x, np.float32(t), np.float32(dt), const)
    return x[..., c.ref_mel.shape[-1]:]


def _segment(pipe, request, i: int, options: RunOptions, secs: dict):
    text_gen, text_lat = pipe.segment_text(request, i)
    search = yield from _generate(pipe, request.conds, text_gen, options.segment_sampling(i))
    codes = search.finalize()
    if len(codes) == 0:
        log.warning("segment %d: the GPT stopped before any code; skipping it", i)
        return codes
    content = pipe.content(request, text_lat, codes, 0, len(codes), secs)
    mel = yield from _s2mel(pipe, content, request.c, options, options.noise_seed(i),
                            pipe.mel_grid(options)(len(codes)))
    with timed(secs, "bigvgan"):
        wav = pipe.vocode(mel)
    yield Audio(wav, i)
    return codes


def _segment_chunks(pipe, request, i: int, options: RunOptions, plan: ChunkPlan, secs: dict):
    """``IndexTTS2Pipeline.segment_chunks``: a window of codes is synthesized every
    ``plan.chunk_codes`` committed codes, while the request's decode rows wait in the batch."""
    text_gen, text_lat = pipe.segment_text(request, i)
    fader, hop, grid = Crossfader(), pipe.cfg.hop_length, pipe.mel_grid(options)
    done = 0

    def window(codes: np.ndarray, start: int, end: int):
        a, e = plan.window(start, end)
        f0, f1 = plan.frames(a, e, grid)
        content = pipe.content(request, text_lat, codes, a, e, secs)
        mel = yield from _s2mel(pipe, content, request.c, options, options.noise_seed(i), f1 - f0, frame_offset=f0)
        with timed(secs, "bigvgan"):
            return pipe.vocode(mel)

    def after_step(search):
        nonlocal done
        while search.committed_length() - done >= plan.chunk_codes:
            end = done + plan.chunk_codes
            wav = yield from window(search.committed(), done, end)
            yield Audio(fader.push(wav, plan.held_back(end, hop, grid)), i)
            done += plan.chunk_codes

    search = yield from _generate(pipe, request.conds, text_gen, options.segment_sampling(i), after_step)
    codes = search.finalize()
    if len(codes) == 0:
        return codes
    if done < len(codes):
        wav = yield from window(codes, done, len(codes))
        yield Audio(fader.push(wav, 0), i)
    yield Audio(fader.flush(), i)
    return codes


__all__ = ["request_steps"]
