"""The fp16/bf16 safety analysis on tiny models: emulation, overflow detection, island choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indextts_trt.export.precision import analyze_stage, leaf_modules, markdown, reduced
from indextts_trt.export.variant import ReferenceModels, generic_inputs, run_reference
from indextts_trt.runtime.indextts2.stages import stage_specs

SAMPLER = generic_inputs  # gpt_layer's parity inputs are plain normal floats


@pytest.fixture(scope="module")
def models(tiny_ckpt):
    return ReferenceModels(tiny_ckpt)


def test_reduced_rounds_outputs_and_restores_weights(models):
    m = models.adapter("gpt_layer")
    spec = stage_specs(models.cfg)["gpt_layer"]
    feed = {"latent": np.random.default_rng(0).standard_normal((1, 9, models.cfg.gpt.model_dim)).astype(np.float32)}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ref = run_reference(m, spec, feed)["projected"]
    with reduced(m, "fp16", keep=set()):
        half = run_reference(m, spec, feed)["projected"]
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # weights back to fp32
    assert np.array_equal(half, half.astype(np.float16).astype(np.float32))  # outputs are fp16 values
    assert 0 < np.abs(half - ref).max() < 1e-2
    with reduced(m, "fp16", keep={""}):  # everything kept: exactly fp32
        assert np.array_equal(run_reference(m, spec, feed)["projected"], ref)


@pytest.mark.parametrize("stage", ["gpt_layer", "length_regulator", "campplus", "dit_step"])
def test_analysis_reports_errors_with_and_without_islands(models, stage):
    spec = stage_specs(models.cfg)[stage]
    r = analyze_stage(models.adapter(stage), spec, models.variant.sources[stage].sampler, "fp16")
    assert set(r.errors_without) == {t.name for t in spec.outputs}
    assert all(np.isfinite(e["max_abs_err"]) and e["max_abs_err"] > 0 for e in r.errors_without.values())
    assert r.passed_with and (r.passed_without or r.islands)
    assert f"| {stage} | fp16 |" in markdown([r], "t")


def test_overflow_becomes_an_fp32_island_in_fp16_not_in_bf16(models):
    m = models.adapter("gpt_layer")
    spec = stage_specs(models.cfg)["gpt_layer"]
    leaves = leaf_modules(m)
    first = next(p for p, mod in leaves.items() if isinstance(mod, torch.nn.Linear))
    with torch.no_grad():
        w = leaves[first].weight
        saved = w.clone()
        w.mul_(3e5)  # its outputs now exceed fp16's 65 504, as BigVGAN's or a norm's might
        try:
            r16 = analyze_stage(m, spec, SAMPLER, "fp16")
            r_bf = analyze_stage(m, spec, SAMPLER, "bf16")
        finally:
            w.copy_(saved)
    assert not r16.passed_without and not all(np.isfinite(e["measure"]) for e in r16.errors_without.values())
    assert first in r16.overflow and first in r16.islands and r16.passed_with
    assert r16.max_abs_activation > 65504
    assert r_bf.overflow == []  # bf16 has fp32's range
    with pytest.raises(ValueError, match="int8"):
        analyze_stage(m, spec, SAMPLER, "int8")
