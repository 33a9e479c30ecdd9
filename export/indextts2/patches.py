"""Scoped export-time replacements, each restoring the original on exit. Each names the problem it
avoids; the parity gate compares the patched graph against the unpatched reference, so a patch
that changed the numbers would fail the build."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _relative_key_float_clamp(module, query, key):
    """transformers' relative_key bias with the distance clamped in float32: its ``torch.clamp``
    on int64 exports as Clip(INT64), which the TensorRT 10 parser rejects (Clip takes FP32/FP16/
    BF16 only). Min/Max on int64 do not help: the ONNX optimizer fuses them back into a Clip.
    Distances are small integers, exact in float32."""
    ql, kl = query.shape[2], key.shape[2]
    left = torch.arange(ql, dtype=torch.float32, device=query.device).view(-1, 1)
    right = torch.arange(kl, dtype=torch.float32, device=query.device).view(1, -1)
    distance = torch.clamp(right - left, -module.left_max_position_embeddings, module.right_max_position_embeddings)
    idx = (distance + module.left_max_position_embeddings).to(torch.long)
    emb = module.distance_embedding(idx).to(dtype=query.dtype)
    return query, torch.einsum("bhld,lrd->bhlr", query, emb) * module.scaling


@contextlib.contextmanager
def relative_key_float_clamp() -> Iterator[None]:
    """The semantic encoder's export patch: transformers' relative-key bias, float-clamped."""
    from transformers.models.wav2vec2_bert import modeling_wav2vec2_bert as hf

    original = hf._apply_relative_key_position_encoding
    hf._apply_relative_key_position_encoding = _relative_key_float_clamp
    try:
        yield
    finally:
        hf._apply_relative_key_position_encoding = original
