"""Host-side code post-processing of IndexTTS-2.5 (numpy, torch-free).

``cut_at_stop`` is what infer_v2_5 does to every generated segment. ``remove_long_silence`` is
upstream's ``IndexTTS2.remove_long_silence``, reproduced with its quirks; upstream *defines* it in
both infer_v2.py and infer_v2_5.py but calls it in neither at HEAD (ee40fa7), so it is opt-in
here. Its silent code 52 was chosen for 2.0's 50 Hz codec; no source says which code is silence
for 2.5's 25 Hz codec.
"""

from __future__ import annotations

import numpy as np

SILENT_CODE = 52
MAX_SILENT = 30  # more silent codes than this in a row's whole buffer triggers the shrink
KEEP_SILENT_RUN = 10  # ... which then keeps at most this many per run of silence


def stop_index(row: np.ndarray, stop_token: int) -> int:
    """Index of the first stop code, or the row length."""
    hits = np.flatnonzero(row == stop_token)
    return int(hits[0]) if hits.size else int(row.shape[0])


def cut_at_stop(codes: np.ndarray, stop_token: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) → (codes[:, :max_len], lens): upstream's per-segment trim after generation."""
    codes = np.asarray(codes)
    lens = np.array([stop_index(r, stop_token) for r in codes], dtype=np.int64)
    return codes[:, : int(lens.max()) if lens.size else 0], lens


def remove_long_silence(codes: np.ndarray, stop_token: int, silent_token: int = SILENT_CODE,
                        max_consecutive: int = MAX_SILENT) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's rule, row by row:
    - the row's length is its first stop code (or the whole row);
    - if the *whole* row (stop and padding included) holds more than ``max_consecutive`` silent
      codes — a total count despite the name — every run of silence before the stop is cut to its
      first 10 codes;
    - when any row was shrunk, the rows are re-padded with the stop code to the longest; when none
      was, the input rows are kept as they are (not cut at their stops); either way the result is
      then clipped to the longest length.
    Returns (codes, lens)."""
    codes = np.asarray(codes)
    rows, lens, fixed = [], [], False
    for row in codes:
        n = stop_index(row, stop_token)
        if int(np.count_nonzero(row == silent_token)) > max_consecutive:
            keep, run = [], 0
            for k in range(n):
                if row[k] != silent_token:
                    keep.append(k)
                    run = 0
                elif run < KEEP_SILENT_RUN:
                    keep.append(k)
                    run += 1
            rows.append(row[keep])
            n = len(keep)
            fixed = True
        else:
            rows.append(row[:n])
        lens.append(n)
    if fixed:
        width = max(r.shape[0] for r in rows)
        out = np.full((len(rows), width), stop_token, dtype=codes.dtype)
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r
        codes = out
    longest = max(lens) if lens else 0
    if longest < codes.shape[1]:
        codes = codes[:, :longest]
    return codes, np.array(lens, dtype=np.int64)


__all__ = ["cut_at_stop", "remove_long_silence", "stop_index", "SILENT_CODE"]
