"""Segmentation of a token list into GPT-sized pieces (upstream ``split_segments_by_token``).

Reproduced as upstream computes it, including two quirks: a comma (or a hyphen) closes the
current piece and re-splits it, and the ``'`` that follows a sentence-final token is appended to
that sentence *and* starts the next one (upstream increments a ``for`` loop variable, which has no
effect in Python, so the piece is seen twice).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

SENTENCE_END = (".", "!", "?", "▁.", "▁?", "▁...")
COMMAS = (",", "▁,")


def split_segments(tokens: list[str], max_tokens: int = 120, quick_streaming_tokens: int = 0,
                   split_tokens: tuple[str, ...] = SENTENCE_END) -> list[list[str]]:
    if not tokens:
        return []
    segments: list[list[str]] = []
    cur: list[str] = []
    for i, tok in enumerate(tokens):
        cur.append(tok)
        if not any(c in split_tokens for c in COMMAS) and any(c in cur for c in COMMAS):
            sub = split_segments(cur, max_tokens, quick_streaming_tokens, COMMAS)
        elif "-" not in split_tokens and "-" in cur:
            sub = split_segments(cur, max_tokens, quick_streaming_tokens, ("-",))
        elif len(cur) <= max_tokens:
            if tok in split_tokens and len(cur) > 2:
                if i < len(tokens) - 1 and tokens[i + 1] in ("'", "▁'"):
                    cur.append(tokens[i + 1])
                segments.append(cur)
                cur = []
            continue
        else:
            sub = [cur[j:j + max_tokens] for j in range(0, len(cur), max_tokens)]
            log.warning("a piece of %d tokens exceeds the %d-token limit and is cut by length", len(cur), max_tokens)
        segments.extend(sub)
        cur = []
    if cur:
        segments.append(cur)
    merged: list[list[str]] = []
    total = 0
    for seg in segments:
        total += len(seg)
        if not seg:
            continue
        if not merged:
            merged.append(seg)
        elif len(merged[-1]) + len(seg) <= max_tokens and total > quick_streaming_tokens:
            merged[-1] = merged[-1] + seg
        elif len(merged[-1]) + len(seg) <= max_tokens / 2:
            merged[-1] = merged[-1] + seg
        else:
            merged.append(seg)
    return merged
