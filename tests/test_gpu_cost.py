"""The GPU cost model's arithmetic (benchmarks/gpu_cost.py), on made-up costs with closed-form answers."""

from __future__ import annotations

import pytest

from indextts_trt.benchmarks import gpu_cost as gc

COSTS = {"gpt_step_weight_bytes": 4_000_000_000, "kv_bytes_per_position": 1_000_000,
         "gpt_mean_cache_positions": {"a": 100.0}, "dit_step_flops": {"a": 2e11},
         "bigvgan_flops_per_audio_second": 1e11, "dit_weight_bytes": 400_000_000, "bigvgan_weight_bytes": 400_000_000}


def test_floors_follow_bytes_and_flops():
    pred = gc.predict(COSTS, rows=3, codes={"a": 40}, vocab=1000, cap_limit=4096)
    d32, d16 = pred["fp32"]["gpt_decode[a]"], pred["fp16"]["gpt_decode[a]"]
    assert d32["bytes"] == pytest.approx(4e9 + 1e6 * 100) and d16["bytes"] == pytest.approx(d32["bytes"] / 2)
    h200 = gc.GPUS["H200 SXM"]
    assert d32["floors"]["H200 SXM"] == (pytest.approx(d32["bytes"] / h200["hbm"]), "memory")
    dit = pred["fp16"]["dit_step[a]"]  # 2e11 FLOP at 989 TFLOP/s beats 0.2 GB at 4.8 TB/s: compute-bound
    assert dit["floors"]["H200 SXM"] == (pytest.approx(2e11 / 989e12), "compute")
    assert pred["fp32"]["dit_step[a]"]["floors"]["H200 SXM"][0] == pytest.approx(2e11 / 67e12)


def test_spare_capacity_is_what_the_runtime_allocates_beyond_the_cache_length():
    from indextts_trt.runtime.kvcache import FIRST_EXTRA, next_capacity

    prefix, codes = 80, 40
    cap, spare = next_capacity(min(prefix + FIRST_EXTRA, 4096), prefix + 1, 4096), []
    for k in range(1, codes + 1):
        if prefix + k > cap:
            cap = next_capacity(prefix + k, cap, 4096)
        spare.append(cap - (prefix + k - 1))
    assert gc._capacity_overhead(prefix, codes, FIRST_EXTRA, 4096) == pytest.approx(sum(spare) / codes)
    assert min(spare) >= 1  # every step has room for its own entry


def test_markdown_says_it_is_a_prediction():
    md = gc.markdown(gc.predict(COSTS, rows=3, codes={"a": 40}, vocab=1000, cap_limit=4096))
    assert "prediction on paper, no GPU measured" in md and md.count("| fp16 |") == 3
