"""Upstream's emotion rules (infer_v2), in numpy: how the request's emotion inputs resolve, and how
an emotion vector mixes into the GPT conditioning. Shared by the reference and the runtime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resolve_emotion(alpha: float, vector: Sequence[float] | None, emotion_audio):
    """→ (alpha, vector, emotion_audio) as upstream resolves them: an explicit 8-weight vector
    drops the emotion audio and absorbs alpha (clamped to [0, 1], weights truncated to 4
    decimals); without emotion audio the speaker prompt is the emotion reference, at alpha 1."""
    if vector is not None:
        emotion_audio = None
        scale = min(max(alpha, 0.0), 1.0)
        if scale != 1.0:
            vector = [int(w * scale * 10000) / 10000 for w in vector]
    if emotion_audio is None:
        alpha = 1.0
    return alpha, vector, emotion_audio


def mix_emovec(base: np.ndarray, emo: np.ndarray, alpha: float) -> np.ndarray:
    """``merge_emovec``: base + alpha · (emo − base), computed as upstream even at alpha 1."""
    return base + alpha * (emo - base)


def preset_emovec(weights: Sequence[float], style: np.ndarray, spk_matrix: np.ndarray, emo_matrix: np.ndarray,
                  emo_num: Sequence[int]) -> np.ndarray:
    """Σ_i w_i · emo_matrix_i[row_i], row_i = the row of group i whose style row is closest (cosine) to
    the prompt's style (1, S) → (1, D)."""
    rows, start = [], 0
    for n in emo_num:
        group = spk_matrix[start:start + n]
        cos = group @ style[0] / np.maximum(np.linalg.norm(group, axis=1) * np.linalg.norm(style[0]), 1e-8)
        rows.append(emo_matrix[start + int(np.argmax(cos))])
        start += n
    return (np.asarray(weights, np.float32)[:, None] * np.stack(rows)).sum(0, keepdims=True)


def apply_vector(emovec: np.ndarray, weights: Sequence[float] | None, preset: np.ndarray | None) -> np.ndarray:
    """With a vector: emovec_mat + (1 − Σw) · emovec (upstream)."""
    if weights is None:
        return emovec
    return preset + (1 - np.asarray(weights, np.float32).sum()) * emovec


__all__ = ["resolve_emotion", "mix_emovec", "preset_emovec", "apply_vector"]
