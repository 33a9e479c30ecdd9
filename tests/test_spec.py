"""StageSpec: dims shared by name, validated at construction, ranges enforced with both numbers."""

from __future__ import annotations

import pytest

from indextts_trt.runtime.spec import Dim, StageSpec, TensorSpec, Tolerance


def make(**kw):
    base = dict(
        name="toy",
        description="toy stage",
        inputs=(TensorSpec("x", "float32", (1, "T", 80)), TensorSpec("codes", "int64", (1, "N"), 0, 37)),
        outputs=(TensorSpec("y", "float32", (1, "T", 5)),),
        dims=(Dim("T", 2, 100, 1000), Dim("N", 2, 10, 50)),
        tolerances={"y": {"fp32": Tolerance("max", 1e-5, 1e-5)}},
    )
    base.update(kw)
    return StageSpec(**base)


def test_shapes_at_profile_points():
    s = make()
    assert s.shape(s.input("x"), s.sizes_at("max")) == (1, 1000, 80)
    assert s.shape(s.output("y"), s.sizes_at("min")) == (1, 2, 5)
    assert s.tolerance("y", "fp32").atol == 1e-5 and s.tolerance("y", "fp16") == Tolerance()


def test_validation_at_construction():
    with pytest.raises(ValueError, match="undeclared dim 'Q'"):
        make(outputs=(TensorSpec("y", "float32", (1, "Q")),))
    with pytest.raises(ValueError, match="declared twice"):
        make(dims=(Dim("T", 2, 3, 4), Dim("T", 2, 3, 4), Dim("N", 2, 3, 4)))
    with pytest.raises(ValueError, match="unknown output"):
        make(tolerances={"z": {}})
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Dim("T", 5, 3, 10)


def test_check_sizes_names_stage_dim_and_numbers():
    s = make()
    s.check_sizes({"T": 1000, "N": 2})
    with pytest.raises(ValueError, match=r"stage toy: T = 1001 is outside the supported range \[2, 1000\]"):
        s.check_sizes({"T": 1001})


def test_spec_hash_changes_with_anything_that_matters():
    a, b = make(), make()
    assert a.spec_hash() == b.spec_hash()
    assert make(dims=(Dim("T", 2, 100, 999), Dim("N", 2, 10, 50))).spec_hash() != a.spec_hash()
    assert make(tolerances={"y": {"fp32": Tolerance("max", 1e-4, 1e-5)}}).spec_hash() != a.spec_hash()
