"""int8_pick.choose: which passing int8 graph a stage keeps. These tests run the ladder on made-up
gate verdicts and times, so every case is checked exactly. The build's use of it, on the tiny
checkpoints with the real gate, is in test_int8_graphs.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indextts_trt.export import int8_pick as ip

SCHEMES = ("dynamic", "rows", "blocks")
LEVELS = ("", "heads", "+attention", "+perceiver", "+norms")


def ladder(levels=LEVELS):
    """int8_quant.trials' shape: each level excludes more nodes, every scheme per level."""
    out = []
    for i, lv in enumerate(levels):
        for s in SCHEMES:
            out.append((f"{s}, {lv}" if lv else s, s, [f"p{j}" for j in range(i)], [f"n{j}" for j in range(3 * i)]))
    return out


def run(verdicts: dict, pick="fastest", fp32=580.0, levels=LEVELS):
    """verdicts: trial name → (passes, ms); a trial not listed fails at 1 ms over its scheme's last."""
    asked, fp32_calls = [], []

    def attempt(t):
        asked.append(t[0])
        ok, ms = verdicts[t[0]]
        return ip.Attempt(ok, [], Path(t[0]), ms if pick == "fastest" else None)

    def fp32_ms():
        fp32_calls.append(1)
        return fp32

    done, kept, ref = ip.choose(ladder(levels), attempt, pick, fp32_ms)
    assert [a.name for a in done] == asked and len(fp32_calls) <= 1
    return asked, kept, ref


# the full-size GPT prefill on the AMD EPYC (README): blocks passes first and is the slowest; rows
# with the heads and the attention projections fp32 passes and beats fp32
PREFILL = {"dynamic": (False, 300), "rows": (False, 328), "blocks": (True, 833),
           "dynamic, heads": (False, 310), "rows, heads": (False, 444), "blocks, heads": (True, 850),
           "dynamic, +attention": (False, 340), "rows, +attention": (True, 476), "blocks, +attention": (True, 900),
           "dynamic, +perceiver": (False, 350), "rows, +perceiver": (True, 480),
           "dynamic, +norms": (True, 360), "rows, +norms": (True, 490)}


def test_first_keeps_the_first_pass_and_times_nothing():
    asked, kept, ref = run(PREFILL, pick="first")
    assert asked == ["dynamic", "rows", "blocks"] and kept.name == "blocks" and ref is None


def test_fastest_climbs_each_scheme_until_it_passes_and_keeps_the_fastest():
    asked, kept, ref = run(PREFILL)
    # a scheme that passed climbs no further (blocks); none climbs past the first pass's level + 2
    assert asked == ["dynamic", "rows", "blocks", "dynamic, heads", "rows, heads",
                     "dynamic, +attention", "rows, +attention"], asked
    assert kept.name == "rows, +attention" and kept.ms == 476 and ref == 580
    assert kept.paths == ["p0", "p1"] and kept.nodes == [f"n{j}" for j in range(6)]


def test_fp32_wins_when_every_passing_graph_is_slower():
    asked, kept, ref = run({**PREFILL, "rows, +attention": (True, 700)})
    assert kept is None and ref == 580
    assert "rows, +attention" in asked


def test_a_scheme_stops_once_a_failed_graph_of_it_is_no_faster_than_the_best():
    v = {**PREFILL, "blocks": (True, 400)}  # now blocks beats rows' failing 444 ms at the heads level
    asked, kept, ref = run(v)
    assert "rows, heads" in asked and "rows, +attention" not in asked  # 444 ≥ 400: rows cannot win from there
    assert "dynamic, +attention" in asked  # dynamic's failures are still faster than 400
    assert kept.name == "blocks"


def test_a_scheme_slower_than_fp32_before_anything_passes_still_climbs():
    """Before a pass there is no fp32 time yet (it is measured once, at the first pass): a failing
    graph slower than fp32 still climbs, because only a pass makes the comparison worth its cost."""
    v = {"dynamic": (False, 900), "rows": (False, 900), "blocks": (False, 900),
         "dynamic, heads": (False, 910), "rows, heads": (True, 300), "blocks, heads": (True, 320)}
    asked, kept, ref = run(v, levels=LEVELS[:2])
    # every scheme climbed to the heads level; blocks' turn came after rows had passed at 300 ms,
    # which its failing 900 ms could not beat
    assert kept.name == "rows, heads" and ref == 580
    assert asked == ["dynamic", "rows", "blocks", "dynamic, heads", "rows, heads"], asked


def test_a_candidate_within_the_margin_does_not_replace_the_earlier_one():
    v = {"dynamic": (True, 100), "rows": (True, 100 * (1 - ip.MARGIN / 2)), "blocks": (True, 80)}
    asked, kept, _ = run(v, fp32=1000)
    assert kept.name == "blocks"  # 20 % faster replaces
    v["blocks"] = (True, 97)
    _, kept, _ = run(v, fp32=1000)
    assert kept.name == "dynamic"  # 2.5 % and 3 % faster do not
    _, kept, ref = run({"dynamic": (True, 100), "rows": (True, 100), "blocks": (True, 100)}, fp32=97)
    assert kept.name == "dynamic" and ref == 97  # nor does fp32 3 % faster


def test_nothing_passes_every_trial_is_run_and_nothing_is_kept():
    v = {t[0]: (False, 50) for t in ladder()}
    asked, kept, ref = run(v)
    assert asked == [t[0] for t in ladder()] and kept is None and ref is None


def test_an_unknown_pick_is_refused():
    with pytest.raises(ValueError, match="fastest, first"):
        ip.choose(ladder(), lambda t: None, "slowest", lambda: 1.0)


def test_the_timing_key_names_the_cpu_only_for_fastest(monkeypatch):
    assert ip.timing_key("first") == {"pick": "first"}
    k = ip.timing_key("fastest")
    assert k["pick"] == "fastest" and k["timed_on"]["threads"] == ip.timing_threads() >= 1
    assert k["timed_on"]["cpu"]
    monkeypatch.setattr(os, "cpu_count", lambda: 97)  # the runtime's default: one thread per core
    assert ip.timing_key("fastest")["timed_on"]["threads"] == 97
