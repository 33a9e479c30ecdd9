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


def test_graph_key_covers_exactly_what_shapes_the_graph():
    a, b = make(), make()
    assert a.graph_key() == b.graph_key() and a.check_key() == b.check_key()
    # what shapes a graph: a range's min/max, a dtype, a tensor name, a fixed size, a derived dim
    shaping = [make(dims=(Dim("T", 2, 100, 999), Dim("N", 2, 10, 50))),
               make(dims=(Dim("T", 3, 100, 1000), Dim("N", 2, 10, 50))),
               make(outputs=(TensorSpec("y", "float16", (1, "T", 5)),)),
               make(outputs=(TensorSpec("z", "float32", (1, "T", 5)),), tolerances={}),
               make(outputs=(TensorSpec("y", "float32", (1, "T", 6)),))]
    assert len({s.graph_key() for s in shaping} | {a.graph_key()}) == len(shaping) + 1
    # what only checks or tunes it: tolerances, opt sizes, value ranges of integer inputs, the text
    checking = [make(tolerances={"y": {"fp32": Tolerance("max", 1e-4, 1e-5)}}),
                make(dims=(Dim("T", 2, 101, 1000), Dim("N", 2, 10, 50))),
                make(inputs=(TensorSpec("x", "float32", (1, "T", 80)), TensorSpec("codes", "int64", (1, "N"), 0, 38)))]
    assert all(s.graph_key() == a.graph_key() for s in checking)
    assert len({s.check_key() for s in checking} | {a.check_key()}) == len(checking) + 1
    assert make(description="other words").graph_key() == a.graph_key()


def test_sizes_are_read_off_the_inputs():
    import numpy as np

    s = make()
    assert s.sizes_of({"x": np.zeros((1, 7, 80)), "codes": np.zeros((1, 3))}) == {"T": 7, "N": 3}
    with pytest.raises(ValueError, match="input x has shape"):
        s.sizes_of({"x": np.zeros((1, 7, 81))})
    with pytest.raises(ValueError, match="input x has shape"):
        s.sizes_of({"x": np.zeros((7, 80))})
