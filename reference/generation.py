"""Code generation (prefill + cached decoding with beam sampling) and the latent pass.

Position conventions, as upstream's HF path computes them (model_v2.GPT2InferenceModel.forward):
- prompt = [conds (C) ; text [0, ids.., 1] at text positions 0..L+1] = P embeddings, then the
  start code at mel position 0 (prefill of P + 1 tokens);
- the k-th generated code c_k (k >= 1) is fed at mel position ``attention_mask_len - P = k + 1``
  because HF extends the attention mask before each forward: the inherited Tortoise off-by-one.
  ``test_gpt.py::test_decode_positions_match_upstream_rule`` pins it down numerically;
- the teacher-forced latent pass uses [start, c_1..c_N, stop] at mel positions 0..N+1 (training's
  convention), so decode and latent pass see c_k at different positions. That is upstream's
  behaviour and is kept.
The repetition penalty sees upstream's fake id history: P ones, then the start code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from indextts_trt.runtime.indextts2.config import max_new_codes
from indextts_trt.runtime.sampling import BeamSearch, SamplingOptions

from .gpt2 import reorder_cache
from .unified_voice import UnifiedVoice


@dataclass(frozen=True)
class GenerationResult:
    codes: np.ndarray  # (N,) int64, without the stop code
    hit_stop: bool  # False: max_new_tokens reached first


def decode_position(k: int) -> int:
    """Mel position of the k-th generated code (k >= 1) in upstream's HF decoding path."""
    return k + 1


def prompt_embeddings(model: UnifiedVoice, conds: Tensor, text_ids: Tensor) -> Tensor:
    """(1, P, D) = [conds ; text embeddings]; text ids are stripped of 0/1 and re-wrapped."""
    return torch.cat([conds, model.text_embed(model.text_ids_with_bounds(text_ids))], dim=1)


@torch.no_grad()
def generate_codes(model: UnifiedVoice, conds: Tensor, text_ids: Tensor, opts: SamplingOptions,
                   stop_token: int | None = None, max_new_tokens: int | None = None) -> GenerationResult:
    return generate_from_prefix(model, prompt_embeddings(model, conds, text_ids), opts, stop_token, max_new_tokens)


@torch.no_grad()
def generate_from_prefix(model, prefix: Tensor, opts: SamplingOptions, stop_token: int | None = None,
                         max_new_tokens: int | None = None) -> GenerationResult:
    """Prefill + decode from a built prompt ``prefix`` (1, P, D); the model variants share this loop
    (``model`` needs mel_embed, run_gpt, logits, cfg and the mel start/stop ids)."""
    stop = model.stop_mel_token if stop_token is None else stop_token
    limit = max_new_codes(model.cfg, opts.max_new_tokens if max_new_tokens is None else max_new_tokens)
    if limit != opts.max_new_tokens:
        opts = opts.replace(max_new_tokens=limit)
    p = prefix.shape[1]
    start = torch.tensor([model.start_mel_token])
    x = torch.cat([prefix, model.mel_embed(start, torch.tensor([0])).unsqueeze(0)], dim=1)
    hidden, cache = model.run_gpt(x)
    logits = model.logits(hidden[:, -1])  # (1, V)
    search = BeamSearch(opts, np.array([1] * p + [model.start_mel_token]), logits.shape[-1], stop,
                        suppress_tokens=(model.start_mel_token,))
    nb = search.num_beams
    cache = [(k.expand(nb, -1, -1, -1).contiguous(), v.expand(nb, -1, -1, -1).contiguous()) for k, v in cache]
    logits = logits.expand(nb, -1)
    k = 0
    while True:
        tokens, beam_index = search.step(logits.float().numpy())
        k += 1
        if search.done:
            break
        cache = reorder_cache(cache, torch.from_numpy(beam_index))
        pos = torch.full((nb,), decode_position(k), dtype=torch.long)
        x = model.mel_embed(torch.from_numpy(tokens), pos).unsqueeze(1)  # (nb, 1, D)
        hidden, cache = model.run_gpt(x, cache)
        logits = model.logits(hidden[:, -1])
    codes = search.finalize()
    return GenerationResult(codes=codes, hit_stop=search.hit_stop)


def latent_inputs(model: UnifiedVoice, conds: Tensor, text_ids: Tensor, codes: Tensor) -> Tensor:
    """(1, C + L + 2 + N + 2, D) embeddings of the teacher-forced pass (UnifiedVoice.forward)."""
    # forward() does not strip ids 0/1 (prepare_gpt_inputs does); pads start/stop around them
    text = F.pad(F.pad(text_ids, (1, 0), value=model.start_text_token), (0, 1), value=model.stop_text_token)
    mel = F.pad(F.pad(codes, (1, 0), value=model.start_mel_token), (0, 1), value=model.stop_mel_token)
    mel_emb = model.mel_embed(mel, torch.arange(mel.shape[0])).unsqueeze(0)
    return torch.cat([conds, model.text_embed(text), mel_emb], dim=1)


@torch.no_grad()
def latents(model: UnifiedVoice, conds: Tensor, text_ids: Tensor, codes: Tensor) -> Tensor:
    """The second GPT pass: final_norm(ln_f(h)) at the mel inputs start, c_1..c_{N-1} → (1, N, D)."""
    n = codes.shape[0]
    hidden, _ = model.run_gpt(latent_inputs(model, conds, text_ids, codes))
    enc = model.final_norm(hidden[:, -(n + 2):])
    return enc[:, :-2]
