"""Upstream's emotion-input rules (infer_v2), shared by the reference and the runtime."""

from __future__ import annotations

from collections.abc import Sequence


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
