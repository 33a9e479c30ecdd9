"""Decoding with upstream (HF 4.5x, vendored ``transformers_generation_utils.py``) semantics, in numpy.

Shared by the PyTorch reference and the torch-free runtime, so both turn identical logits into
identical codes. HF picks the loop by ``num_beams``; so does :class:`BeamSearch`.

``num_beams > 1`` — ``_beam_search`` (``do_sample=True``: beam sample), per step:

1. ``log_softmax`` of the float32 logits;
2. processors in HF's order — repetition penalty on the *log-probs* of every id in the history
   (including upstream's fake prompt ids ``1`` and the start id), the min-new-tokens ban of the stop
   code, then the warpers temperature, top-k, top-p (``min_tokens_to_keep = 2``: HF keeps one
   non-eos token);
3. add the running beam scores; softmax over the flattened ``num_beams × V``;
4. draw ``2·num_beams`` candidates without replacement (or take the top ``2·num_beams``), sort;
5. the ``BeamSearchScorer`` bookkeeping (length penalty, finished hypotheses, ``is_done``).

``num_beams == 1`` — ``_sample``, per step: the same processors on the **raw** logits (no
``log_softmax``: the penalty then divides/multiplies logits, which can change the argmax), warpers
with ``min_tokens_to_keep = 1`` when sampling; then ``argmax`` (greedy) or one draw from
``softmax(scores)``; the sequence ends when the stop code is chosen or at ``max_new_tokens``.

Deviation: draws use numpy's Generator (Gumbel-top-k / Gumbel-max, which sample from the same
distributions as ``torch.multinomial``), so a seed does not reproduce torch's draws; everything else
is deterministic and follows HF.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import OptionError
from .numerics import is_int, is_number

NEG_INF = -np.inf


@dataclass(frozen=True)
class SamplingOptions:
    do_sample: bool = True
    num_beams: int = 3
    top_k: int = 30
    top_p: float = 0.8
    temperature: float = 0.8
    repetition_penalty: float = 10.0
    length_penalty: float = 0.0
    max_new_tokens: int = 1500
    # HF's min_new_tokens: the stop code is banned until this many codes exist. Upstream leaves it
    # at 0; benchmarks set min = max so random weights generate exactly the codes real ones would.
    min_new_tokens: int = 0
    seed: int | None = None

    def validated(self) -> SamplingOptions:
        """Raise :class:`OptionError` on the first broken rule (NaN and ±Inf break every number's)."""
        checks = [
            (isinstance(self.do_sample, bool), "do_sample", "must be True or False"),
            (is_int(self.num_beams) and self.num_beams >= 1, "num_beams", "must be an integer >= 1"),
            (is_int(self.top_k) and self.top_k >= 0, "top_k", "must be an integer >= 0 (0 disables it)"),
            (is_number(self.top_p) and 0.0 < self.top_p <= 1.0, "top_p", "must be a number in (0, 1]"),
            (is_number(self.temperature) and self.temperature > 0.0, "temperature", "must be a finite number > 0"),
            (is_number(self.repetition_penalty) and self.repetition_penalty > 0.0, "repetition_penalty",
             "must be a finite number > 0 (1: off)"),
            (is_number(self.length_penalty), "length_penalty", "must be a finite number"),
            (is_int(self.max_new_tokens) and self.max_new_tokens >= 1, "max_new_tokens", "must be an integer >= 1"),
            (is_int(self.min_new_tokens) and is_int(self.max_new_tokens)
             and 0 <= self.min_new_tokens <= self.max_new_tokens, "min_new_tokens",
             "must be an integer in [0, max_new_tokens]"),
            (self.seed is None or (is_int(self.seed) and 0 <= self.seed < 2**63), "seed",
             "must be None or an integer >= 0"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise OptionError(name, getattr(self, name), msg)
        return self

    @classmethod
    def greedy(cls, max_new_tokens: int = 1500, repetition_penalty: float = 10.0) -> SamplingOptions:
        """HF greedy search (``_sample`` with ``do_sample=False``): argmax of the raw logits after the
        repetition penalty (and the stop-code ban while under ``min_new_tokens``)."""
        return cls(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                   repetition_penalty=repetition_penalty, temperature=1.0, top_k=0, top_p=1.0)

    def replace(self, **kw) -> SamplingOptions:
        return dataclasses.replace(self, **kw)


# ----------------------------------------------------------------------------------- processors


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def apply_repetition_penalty(scores: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """HF RepetitionPenaltyLogitsProcessor: for each id in the row's history, negative scores are
    multiplied by ``penalty`` and positive ones divided. ``seen``: (rows, V) bool."""
    if penalty == 1.0:
        return scores
    pen = np.where(scores < 0, scores * penalty, scores / penalty).astype(np.float32)
    return np.where(seen, pen, scores)


def apply_top_k(scores: np.ndarray, k: int, min_keep: int) -> np.ndarray:
    k = min(max(k, min_keep), scores.shape[-1])
    if k <= 0 or k >= scores.shape[-1]:
        return scores
    # HF: remove tokens whose score is < the k-th largest (ties with it are kept)
    kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1 : k]
    return np.where(scores < kth, NEG_INF, scores).astype(np.float32)


def apply_top_p(scores: np.ndarray, top_p: float, min_keep: int) -> np.ndarray:
    if top_p >= 1.0:
        return scores
    # HF TopPLogitsWarper: sort ascending, remove the low tail whose cumulative prob <= 1 - top_p,
    # always keeping the last ``min_keep`` (largest) tokens.
    order = np.argsort(scores, axis=-1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=-1)
    probs = _softmax(sorted_scores)
    cum = np.cumsum(probs, axis=-1)
    remove_sorted = cum <= (1.0 - top_p)
    remove_sorted[:, -min_keep:] = False
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, axis=-1)
    return np.where(remove, NEG_INF, scores).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def process_scores(logits: np.ndarray, seen: np.ndarray, opts: SamplingOptions, ban: int | None = None) -> np.ndarray:
    """(beam search only) log_softmax → repetition penalty → min-length ban of ``ban`` (HF's
    processors, in order) → (sampling only) the warpers temperature, top-k, top-p. With one beam
    HF's ``_sample`` runs the processors on the raw logits."""
    logits = np.asarray(logits, dtype=np.float32)
    scores = log_softmax(logits) if opts.num_beams > 1 else logits.copy()
    scores = apply_repetition_penalty(scores, seen, opts.repetition_penalty)
    if ban is not None:
        scores[:, ban] = NEG_INF
    if opts.do_sample:
        min_keep = 2 if opts.num_beams > 1 else 1
        if opts.temperature != 1.0:
            scores = (scores / np.float32(opts.temperature)).astype(np.float32)
        if opts.top_k:
            scores = apply_top_k(scores, opts.top_k, min_keep)
        scores = apply_top_p(scores, opts.top_p, min_keep)
    return scores


# --------------------------------------------------------------------------------- beam search


@dataclass
class _Hypotheses:
    """HF BeamHypotheses for one batch item: the best ``num_beams`` finished sequences."""

    num_beams: int
    length_penalty: float
    beams: list[tuple[float, list[int], bool]] = dataclasses.field(default_factory=list)
    worst_score: float = 1e9

    def add(self, tokens: list[int], sum_logprobs: float, generated_len: int, ended_by_stop: bool) -> None:
        score = sum_logprobs / (max(generated_len, 1) ** self.length_penalty)
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, tokens, ended_by_stop))
            if len(self.beams) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        # early_stopping=False: done when no running beam could still beat the worst kept one
        if len(self.beams) < self.num_beams:
            return False
        highest = best_sum_logprobs / (cur_len ** self.length_penalty)
        return self.worst_score >= highest


class BeamSearch:
    """Stateful decoder over one prompt: HF's ``_beam_search`` for ``num_beams > 1``, its
    ``_sample`` (greedy or sampling) for ``num_beams == 1``.

    ``step(logits)`` takes the next-token logits of every live beam and returns the tokens to feed
    and ``beam_index``: the caller reorders its KV cache rows so that new row ``j`` is old row
    ``beam_index[j]``, then feeds ``next_tokens[j]`` as row ``j``'s next input. Once ``done`` is
    true nothing more is fed (with one beam the last token returned may be the stop code).
    """

    def __init__(self, opts: SamplingOptions, prompt_ids: np.ndarray, vocab_size: int, stop_token: int,
                 suppress_tokens: tuple[int, ...] = ()):
        self.opts = opts.validated()
        # Deviation: upstream masks no logit, so its GPT may emit the *start* code 8192. It is no
        # semantic code: upstream keeps it as a code (only the stop code cuts), the latent pass
        # embeds it, then vq2emb's F.embedding over the 8192-entry codebook raises (CPU: "index out
        # of range"; CUDA: a device-side assert). We let the caller suppress such ids. Where upstream
        # never ranks the start code among its candidates the codes are the same (a draw's other
        # probabilities are renormalized); where it does, upstream keeps that beam and crashes if
        # it wins.
        self.suppress = np.asarray(suppress_tokens, dtype=np.int64)
        self.vocab_size = int(vocab_size)
        self.stop_token = int(stop_token)
        nb = self.opts.num_beams
        self.rng = np.random.default_rng(self.opts.seed)
        prompt = np.asarray(prompt_ids, dtype=np.int64).ravel()
        self.prompt_len = len(prompt)
        self.sequences: list[list[int]] = [[] for _ in range(nb)]  # generated ids per live beam
        seen = np.zeros((nb, self.vocab_size), dtype=bool)
        seen[:, prompt[(prompt >= 0) & (prompt < self.vocab_size)]] = True
        self.seen = seen
        # HF: only the first beam is live at the start so the copies do not triplicate candidates
        self.beam_scores = np.full(nb, -1e9, dtype=np.float32)
        self.beam_scores[0] = 0.0
        self.hyps = _Hypotheses(nb, self.opts.length_penalty)
        self._done = False
        self._scorer_done = False
        self._hit_stop = False
        self._steps = 0
        self._committed = 0

    @property
    def num_beams(self) -> int:
        return self.opts.num_beams

    @property
    def done(self) -> bool:
        return self._done

    def step(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._done:
            raise RuntimeError("BeamSearch.step called after the search finished")
        nb, V = self.num_beams, self.vocab_size
        logits = np.asarray(logits, dtype=np.float32)
        if logits.shape != (nb, V):
            raise ValueError(f"sampler: logits must be ({nb}, {V}), got {logits.shape}")
        early = len(self.sequences[0]) < self.opts.min_new_tokens
        processed = process_scores(logits, self.seen, self.opts, self.stop_token if early else None)
        if self.suppress.size:
            processed[:, self.suppress] = NEG_INF
        if nb == 1:
            return self._sample_step(processed[0])
        scores = (processed + self.beam_scores[:, None]).reshape(-1)  # (nb*V,)
        n_keep = 2 * nb
        if self.opts.do_sample:
            cand = self._sample_without_replacement(scores, n_keep)
            cand = cand[np.argsort(-scores[cand], kind="stable")]
        else:
            part = np.argpartition(-scores, n_keep - 1)[:n_keep]
            cand = part[np.argsort(-scores[part], kind="stable")]
        cand_scores = scores[cand]
        cand_beam, cand_tok = cand // V, cand % V
        self._steps += 1
        # BeamSearchScorer.process. A finished hypothesis is stored WITHOUT its stop token (HF
        # stores input_ids[beam]); generated_len only matters through length_penalty.
        next_scores, next_tokens, next_idx = [], [], []
        for rank, (s, b, t) in enumerate(zip(cand_scores, cand_beam, cand_tok)):
            if t == self.stop_token:
                if rank >= nb:  # an eos candidate outside the top num_beams is ignored
                    continue
                self.hyps.add(list(self.sequences[b]), float(s), len(self.sequences[b]) + 1, True)
            else:
                next_scores.append(float(s))
                next_tokens.append(int(t))
                next_idx.append(int(b))
            if len(next_tokens) == nb:
                break
        if len(next_tokens) < nb:  # cannot happen with 2*nb candidates and one stop id
            raise RuntimeError("sampler: fewer live candidates than beams")
        # HF passes the best of ALL candidates (eos included) and cur_len - prompt_len
        self._scorer_done = self._scorer_done or self.hyps.is_done(float(cand_scores.max()),
                                                                   len(self.sequences[0]) + 1)
        beam_index = np.asarray(next_idx, dtype=np.int64)
        tokens = np.asarray(next_tokens, dtype=np.int64)
        self.sequences = [self.sequences[b] + [t] for b, t in zip(beam_index, tokens)]
        self.seen = self.seen[beam_index]
        self.seen[np.arange(nb), tokens] = True
        self.beam_scores = np.asarray(next_scores, dtype=np.float32)
        # MaxLengthCriteria: stop once max_new_tokens tokens were appended
        self._done = self._scorer_done or len(self.sequences[0]) >= self.opts.max_new_tokens
        return tokens, beam_index

    def _sample_step(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HF ``_sample``: one token from the processed scores (V,); no beam bookkeeping."""
        self._steps += 1
        if self.opts.do_sample:  # Gumbel-max: argmax(scores + G) ~ softmax(scores), as multinomial
            g = self.rng.gumbel(size=scores.shape)
            tok = int(np.argmax(np.where(np.isfinite(scores), scores.astype(np.float64) + g, -np.inf)))
        else:
            tok = int(np.argmax(scores))  # first index on ties, as torch.argmax
        if tok == self.stop_token:  # EosTokenCriteria: the stop code ends the sequence, not a code
            self._hit_stop = self._scorer_done = self._done = True
            return np.array([tok], np.int64), np.zeros(1, np.int64)
        self.sequences[0].append(tok)
        self.seen[0, tok] = True
        self._done = len(self.sequences[0]) >= self.opts.max_new_tokens  # MaxLengthCriteria
        return np.array([tok], np.int64), np.zeros(1, np.int64)

    def _sample_without_replacement(self, scores: np.ndarray, k: int) -> np.ndarray:
        # Gumbel-top-k: argtopk(scores + Gumbel noise) draws k items without replacement with
        # probabilities softmax(scores), the distribution torch.multinomial(..., k) samples from.
        finite = np.isfinite(scores)
        g = self.rng.gumbel(size=scores.shape).astype(np.float64)
        keys = np.where(finite, scores.astype(np.float64) + g, -np.inf)
        n_finite = int(finite.sum())
        if n_finite < k:  # fewer admissible tokens than draws: take them all, then the rest by score
            keys = np.where(finite, keys, -1e300 + scores.astype(np.float64) * 0)
        part = np.argpartition(-keys, k - 1)[:k]
        return part[np.argsort(-keys[part], kind="stable")]

    def committed_length(self) -> int:
        """How many leading codes are final already: the common prefix of every live beam and every
        kept finished hypothesis. The answer is one of those or a descendant of a live beam, so
        this prefix never changes again; it only grows (new hypotheses are copies of live beams,
        new beams extend live ones), hence the incremental scan."""
        seqs = self.sequences + [h[1] for h in self.hyps.beams]
        c = self._committed
        while all(len(q) > c for q in seqs) and all(q[c] == seqs[0][c] for q in seqs):
            c += 1
        self._committed = c
        return c

    def committed(self) -> np.ndarray:
        return np.asarray(self.sequences[0][: self.committed_length()], dtype=np.int64)

    def finalize(self) -> np.ndarray:
        """The best hypothesis' codes (the stop token is not included)."""
        if self.num_beams == 1:  # _sample: the one sequence; _hit_stop was set when it stopped
            return np.asarray(self.sequences[0], dtype=np.int64)
        if not self._scorer_done:
            # HF finalize: at the length limit the running beams join the hypotheses
            for b in range(self.num_beams):
                self.hyps.add(list(self.sequences[b]), float(self.beam_scores[b]), len(self.sequences[b]), False)
        best = max(self.hyps.beams, key=lambda x: x[0])
        self._hit_stop = best[2]
        return np.asarray(best[1], dtype=np.int64)

    @property
    def hit_stop(self) -> bool:
        """Whether the returned codes ended with the stop token (else the length limit was hit)."""
        return self._hit_stop
