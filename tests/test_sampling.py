"""The numpy sampler: HF processor semantics, beam bookkeeping, seeding, greedy, limits."""

from __future__ import annotations

import numpy as np
import pytest

from indextts_trt.runtime.sampling import (
    BeamSearch,
    SamplingOptions,
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    log_softmax,
    process_scores,
)


def test_repetition_penalty_signs():
    s = np.array([[-2.0, -0.5, 1.0, 3.0]], np.float32)
    seen = np.array([[True, False, True, False]])
    out = apply_repetition_penalty(s, seen, 10.0)
    np.testing.assert_allclose(out, [[-20.0, -0.5, 0.1, 3.0]], rtol=1e-6)


def test_top_k_keeps_ties_and_min_tokens():
    s = np.array([[5.0, 4.0, 4.0, 1.0, 0.0]], np.float32)
    assert np.isfinite(apply_top_k(s, 2, 1)).sum() == 3  # the tie with the 2nd is kept (HF: < kth removed)
    assert np.isfinite(apply_top_k(s, 1, 2)).sum() >= 2  # min_tokens_to_keep wins over k


def test_top_p_matches_hand_computation():
    logp = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    kept = np.isfinite(apply_top_p(logp, 0.8, 1))
    # ascending cumulative: 0.05, 0.20, 0.50, 1.0; removed where <= 0.2 → the two smallest
    assert kept.tolist() == [[True, True, False, False]]
    kept2 = np.isfinite(apply_top_p(logp, 0.1, 2))
    assert kept2.sum() == 2  # min_tokens_to_keep


def test_processor_order_penalty_before_temperature():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]], np.float32)
    seen = np.array([[True, False, False, False]])
    # beam search (HF _beam_search): log_softmax first, the penalty on log-probs, then temperature
    opts = SamplingOptions(num_beams=3, temperature=0.5, top_k=0, top_p=1.0, repetition_penalty=3.0)
    out = process_scores(np.repeat(logits, 3, 0), np.repeat(seen, 3, 0), opts)
    lp = log_softmax(logits)
    expect = lp.copy()
    expect[0, 0] = lp[0, 0] * 3.0  # negative log-prob is multiplied
    np.testing.assert_allclose(out, np.repeat(expect / 0.5, 3, 0), rtol=1e-6)
    # one beam (HF _sample): the same processors on the raw logits
    out1 = process_scores(logits, seen, opts.replace(num_beams=1))
    np.testing.assert_allclose(out1, [[2.0 / 3.0 / 0.5, 1.0 / 0.5, 0.0, -1.0 / 0.5]], rtol=1e-6)


def test_one_beam_penalizes_raw_logits_so_the_pick_differs_from_beam_order():
    """logits [5, 1, -3], code 0 already seen, penalty 10. HF _sample: raw 5 / 10 = 0.5 < 1 → code 1.
    The beam-search order (log_softmax first) keeps code 0: log p0 = -0.018, ×10 = -0.18 > -4.02."""
    logits = np.array([5.0, 1.0, -3.0, -9.0], np.float32)  # code 3 = stop, never chosen here
    bs = BeamSearch(SamplingOptions.greedy(max_new_tokens=1), np.array([0]), 4, stop_token=3)
    tokens, idx = bs.step(logits[None])
    assert tokens.tolist() == [1] and idx.tolist() == [0] and bs.done and not bs.hit_stop
    assert bs.finalize().tolist() == [1]
    seen = np.array([[True, False, False, False]])
    beam_order = log_softmax(logits[None])
    beam_order = apply_repetition_penalty(beam_order, seen, 10.0)
    assert int(np.argmax(beam_order)) == 0


def test_one_beam_sampling_draws_from_the_warped_raw_logits():
    """HF _sample with do_sample: temperature/top-k/top-p on the penalized raw logits (min keep 1),
    then one draw from their softmax. Frequencies over many independent searches match it."""
    logits = np.array([2.0, 1.5, 1.0, 0.2, -1.0, -6.0], np.float32)  # 5 = stop
    opts = SamplingOptions(num_beams=1, temperature=0.8, top_k=4, top_p=0.9, repetition_penalty=2.0,
                           max_new_tokens=1)
    seen = np.array([[False, True, False, False, False, False]])
    p_scores = process_scores(logits[None], seen, opts)[0]
    p = np.exp(p_scores - p_scores.max())
    p /= p.sum()
    # by hand: raw [2, 0.75, 1, 0.2, -1, -6] / 0.8, top-4 keeps {0, 2, 1, 3}, top-p 0.9 drops 3
    assert np.isfinite(p_scores).tolist() == [True, True, True, False, False, False]
    counts = np.zeros(6)
    for seed in range(3000):
        bs = BeamSearch(opts.replace(seed=seed), np.array([1]), 6, stop_token=5)
        counts[bs.step(logits[None])[0][0]] += 1
    np.testing.assert_allclose(counts / 3000, p, atol=0.03)


def _run(opts, logits_fn, V=7, stop=6, prompt=(1, 1, 5)):
    bs = BeamSearch(opts, np.array(prompt), V, stop)
    history = [[] for _ in range(bs.num_beams)]  # what a KV cache would hold per row
    step = 0
    while not bs.done:
        tokens, idx = bs.step(logits_fn(step, history))
        history = [history[i] + [int(t)] for i, t in zip(idx, tokens)]
        step += 1
        if not bs.done:  # once done nothing is fed (one beam: the last token may be the stop code)
            assert history == bs.sequences  # the reorder contract
    return bs.finalize(), bs


def test_greedy_is_argmax_of_processed_scores():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((40, 7)).astype(np.float32)

    def fn(step, hist):
        return table[step][None]

    codes, bs = _run(SamplingOptions.greedy(max_new_tokens=30), fn)
    seen = np.zeros((1, 7), bool)
    seen[0, [1, 5]] = True
    expect = []
    for step in range(len(codes) + 1):
        tok = int(np.argmax(process_scores(table[step][None], seen, SamplingOptions.greedy())))
        if tok == 6:
            break
        expect.append(tok)
        seen[0, tok] = True
    assert codes.tolist() == expect


def test_beam_bookkeeping_on_a_forced_case():
    """Peaked logits force the search: step 0 only beam 0 is live (HF init scores [0, -1e9, -1e9]);
    the stop code becomes the best candidate at step 2 for the beam that chose token 2."""
    V, stop = 7, 6
    big = 30.0

    def fn(step, hist):
        lg = np.full((3, V), -big, np.float32)
        for r, h in enumerate(hist):
            if step == 0:
                lg[r, [2, 3, 4]] = [big, big - 1, big - 2]
            elif h and h[-1] == 2:
                lg[r, stop] = big  # beam "2" wants to stop
                lg[r, 0] = big - 5
            else:
                lg[r, 0] = big
        return lg

    opts = SamplingOptions(do_sample=False, num_beams=3, repetition_penalty=1.0, max_new_tokens=5)
    codes, bs = _run(opts, fn)
    assert codes.tolist() == [2] and bs.hit_stop  # the stopped hypothesis [2] beats longer ones


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(1)
    table = rng.standard_normal((60, 3, 50)).astype(np.float32) * 0.1

    def fn(step, hist):
        lg = table[step].copy()
        lg[:, 49] = -5.0  # rarely stop
        return lg

    def go(seed):
        opts = SamplingOptions(seed=seed, top_k=30, top_p=0.95, repetition_penalty=1.2, max_new_tokens=40)
        return _run(opts, fn, V=50, stop=49)[0].tolist()

    assert go(3) == go(3)
    assert go(3) != go(4)


def test_max_new_tokens_cap_and_no_stop():
    def fn(step, hist):
        lg = np.zeros((3, 7), np.float32)
        lg[:, 6] = -50.0
        return lg

    codes, bs = _run(SamplingOptions(seed=0, max_new_tokens=9), fn)
    assert len(codes) == 9 and not bs.hit_stop and 6 not in codes.tolist()


@pytest.mark.parametrize("opts", [SamplingOptions.greedy(max_new_tokens=20), SamplingOptions(seed=1, max_new_tokens=20)])
def test_min_new_tokens_bans_the_stop_code_until_reached(opts):
    def fn(step, hist):  # the stop code is by far the likeliest at every step
        lg = np.zeros((len(hist), 7), np.float32)
        lg[:, 6] = 20.0
        return lg

    codes, bs = _run(opts, fn)
    assert len(codes) == 0 and bs.hit_stop
    codes, bs = _run(opts.replace(min_new_tokens=7), fn)
    assert len(codes) == 7 and bs.hit_stop and 6 not in codes.tolist()
    codes, bs = _run(opts.replace(min_new_tokens=20), fn)  # min = max: exactly max codes
    assert len(codes) == 20 and not bs.hit_stop
    with pytest.raises(ValueError, match="min_new_tokens"):
        opts.replace(min_new_tokens=21).validated()


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match="top_p"):
        SamplingOptions(top_p=0.0).validated()
    with pytest.raises(ValueError, match="num_beams"):
        BeamSearch(SamplingOptions(num_beams=0), np.array([1]), 7, 6)
    bs = BeamSearch(SamplingOptions(), np.array([1]), 7, 6)
    with pytest.raises(ValueError, match=r"logits must be \(3, 7\)"):
        bs.step(np.zeros((1, 7), np.float32))


@pytest.mark.parametrize("num_beams", [1, 3])
def test_deterministic_decoding_equals_hf_generate(num_beams):
    """HF's own generate (greedy ``_sample`` / ``_beam_search``) on a tiny random GPT-2, against our
    decoder fed the same model's logits: the same codes, including the stop."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    V, stop, start = 23, 22, 21
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=64, n_embd=12, n_layer=2, n_head=3,
                                  bos_token_id=start, eos_token_id=stop, pad_token_id=stop)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # sharpen the logits so the penalty and the stop code matter
        model.lm_head.weight.mul_(40.0)
    prompt = [1, 1, 1, start]
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), do_sample=False, num_beams=num_beams, max_new_tokens=25,
                             repetition_penalty=10.0, length_penalty=0.0, eos_token_id=stop, pad_token_id=stop,
                             attention_mask=torch.ones(1, 4, dtype=torch.long))[0, 4:].tolist()
    opts = SamplingOptions(do_sample=False, num_beams=num_beams, repetition_penalty=10.0, length_penalty=0.0,
                           max_new_tokens=25, top_k=0, top_p=1.0, temperature=1.0)

    def fn(step, hist):
        ids = torch.tensor([prompt + h for h in hist])
        with torch.no_grad():
            return model(ids).logits[:, -1].float().numpy()

    codes, bs = _run(opts, fn, V=V, stop=stop, prompt=prompt)
    expect = ref[: ref.index(stop)] if stop in ref else ref
    assert codes.tolist() == expect and bs.hit_stop == (stop in ref)
