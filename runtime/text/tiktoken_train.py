"""Write a random-but-real IndexTTS-2.5 tokenizer file (``.tiktoken`` ranks), offline.

The released ``multilingual_zh_ja_yue_char_del.tiktoken`` cannot be downloaded here. This writes
one in the same format and with the same conventions the model depends on:
- ranks 0..255 are the single bytes in GPT-2's order (printable ASCII first), so ``"!"`` has id 0
  and ``'"'`` id 1 — the ids upstream's ``prepare_gpt_inputs`` strips as start/stop text tokens;
- then byte-pair merges learnt (real BPE, most frequent pair first) from a deterministic synthetic
  corpus in the pre-tokenizer's own splits: lower- and upper-case Latin words with Spanish
  accents, common CJK characters, kana, digits and punctuation;
- when the corpus runs out of pairs (the full 58 836-rank size), further ranks are concatenations
  of two lower-ranked tokens, so every rank stays reachable by a merge.
The special tokens are not in the file: they are appended at load time (multilingual.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .multilingual import PAT_STR

_CJK = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
        "小么心多天而能好都然没日于起还发成事只作当想看文无开手用主行方又如前所本见经头面公同已老从动两长知民"
        "样现分将外但身些与高意进把法此实回理美月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打"
        "零二三四五六七八九十百千万点今京银走半仪式感")
_KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんがぎぐげご"
_KATA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンガギグゲゴ"
_SYLL = ["ba", "ca", "de", "el", "en", "es", "la", "lo", "ma", "me", "no", "ra", "re", "se", "si", "ta", "te",
         "to", "un", "ña", "ción", "qué", "dí", "the", "and", "ing", "er", "on", "at", "or", "ou", "th", "sh"]
_PUNCT = [".", ",", "?", "!", "'", "-", "…", "。", "、"]


def gpt2_byte_order() -> list[int]:
    """GPT-2's byte table order: '!'..'~', '¡'..'¬', '®'..'ÿ', then every other byte ascending."""
    first = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    seen = set(first)
    return first + [b for b in range(256) if b not in seen]


def _corpus(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(1500):
        kind = i % 4
        if kind == 0:
            lines.append("".join(rng.choice(list(_CJK), size=int(rng.integers(3, 12)))) + str(rng.choice(_PUNCT)))
        elif kind == 1:
            kana = list(_KANA if i % 8 == 1 else _KATA)
            lines.append("".join(rng.choice(kana, size=int(rng.integers(3, 10)))) + "。")
        else:
            words = ["".join(rng.choice(_SYLL, size=int(rng.integers(1, 4)))) for _ in range(int(rng.integers(3, 9)))]
            if kind == 3:
                words = [w.upper() for w in words]
            if i % 5 == 0:
                words.insert(int(rng.integers(0, len(words))), str(int(rng.integers(0, 3000))))
            lines.append(" ".join(words) + str(rng.choice(_PUNCT)))
    return lines


def _learn_merges(words: Counter, ranks: dict[bytes, int], limit: int) -> None:
    """Classic BPE: repeatedly merge the most frequent adjacent pair (ties: the smallest bytes),
    with incremental pair counts and a lazily invalidated heap, so thousands of merges take seconds."""
    import heapq
    from collections import defaultdict

    seqs = {w: [bytes([b]) for b in w] for w in words}
    counts: Counter = Counter()
    where: dict[tuple[bytes, bytes], set[bytes]] = defaultdict(set)
    for w, seq in seqs.items():
        for p in zip(seq, seq[1:]):
            counts[p] += words[w]
            where[p].add(w)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    while len(ranks) < limit and heap:
        neg, best = heapq.heappop(heap)
        if -neg != counts.get(best, 0):  # stale entry
            continue
        if -neg < 2:
            return
        merged = best[0] + best[1]
        if merged not in ranks:
            ranks[merged] = len(ranks)
        touched = set()
        for w in list(where.pop(best, ())):
            seq, f = seqs[w], words[w]
            for p in zip(seq, seq[1:]):
                counts[p] -= f
                touched.add(p)
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
            for p in zip(out, out[1:]):
                counts[p] += f
                where[p].add(w)
                touched.add(p)
        counts.pop(best, None)
        for p in touched - {best}:  # re-queue every pair whose count changed (old entries go stale)
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))


def build_ranks(n_ranks: int, seed: int = 0, max_learned: int = 4000) -> dict[bytes, int]:
    import regex

    if n_ranks < 256:
        raise ValueError(f"a byte-level BPE needs at least 256 ranks, asked for {n_ranks}")
    ranks = {bytes([b]): i for i, b in enumerate(gpt2_byte_order())}
    pat = regex.compile(PAT_STR)
    words: Counter = Counter()
    for line in _corpus(seed):
        words.update(piece.encode("utf-8") for piece in pat.findall(line))
    _learn_merges(words, ranks, min(n_ranks, 256 + max_learned))
    rng = np.random.default_rng(seed + 1)
    multi = [t for t in ranks if len(t) > 1] or [bytes([b]) for b in range(256)]
    while len(ranks) < n_ranks:  # fill: concatenations of two existing tokens, each new one reusable
        a, b = multi[int(rng.integers(len(multi)))], multi[int(rng.integers(len(multi)))]
        if a + b not in ranks and len(a + b) <= 24:
            ranks[a + b] = len(ranks)
            multi.append(a + b)
    return ranks


def write_tiktoken_file(path: str | Path, n_ranks: int, seed: int = 0) -> Path:
    """Write ``n_ranks`` ranks as ``<base64> <rank>`` lines (atomically)."""
    import base64

    from ..files import write_bytes_atomic

    ranks = build_ranks(n_ranks, seed)
    text = "".join(f"{base64.b64encode(t).decode('ascii')} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode("ascii"))
    return path


__all__ = ["gpt2_byte_order", "build_ranks", "write_tiktoken_file"]
