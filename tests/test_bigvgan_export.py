"""BigVGAN's export-only polyphase activation equals upstream's formulation (the reference's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indextts_trt.export.indextts2.adapters import Vocoder
from indextts_trt.export.indextts2.bigvgan_export import BLOCK, PolyphaseActivation1d, conv1d, polyphase_bigvgan
from indextts_trt.reference.bigvgan import FULL_CONFIG, Activation1d, BigVGAN, SnakeBeta


def _activation(channels: int, seed: int, asymmetric: bool) -> Activation1d:
    g = torch.Generator().manual_seed(seed)
    act = Activation1d(channels, logscale=True)
    act.act.alpha.data = torch.randn(channels, generator=g) * 0.5
    act.act.beta.data = torch.randn(channels, generator=g) * 0.5
    act.act.prepare()
    if asymmetric:  # the Kaiser-sinc filters are symmetric, which would hide a reversed tap order
        for m in (act.upsample, act.downsample.lowpass):
            f = torch.randn(1, 1, 12, generator=g)
            m.filter.copy_(f)
            m.weight.copy_(f.expand(channels, -1, -1))
    return act


@pytest.mark.parametrize("asymmetric", [False, True])
@pytest.mark.parametrize("channels,length", [(3, 1), (5, 2), (7, 3), (5, 7), (3, 20), (11, 33)])
def test_polyphase_activation_equals_upstream_formulation(channels, length, asymmetric):
    act = _activation(channels, seed=channels * 100 + length, asymmetric=asymmetric)
    x = torch.randn(2, channels, length, generator=torch.Generator().manual_seed(length)) * 2
    with torch.no_grad():
        ref, got = act(x), PolyphaseActivation1d(act)(x)
    assert got.shape == ref.shape == (2, channels, length)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)  # float32 summation order only


def test_polyphase_activation_rejects_other_ratios():
    act = Activation1d(3, logscale=True)
    act.upsample.ratio = 3
    with pytest.raises(ValueError, match="ratio 2"):
        PolyphaseActivation1d(act)


def _tiny_bigvgan(seed: int = 0, channels: int = 26) -> BigVGAN:
    torch.manual_seed(seed)
    # odd sizes: 3 resblock kernels, an odd channel count, two upsampling stages
    h = dict(FULL_CONFIG, upsample_rates=[4, 2], upsample_kernel_sizes=[8, 4], upsample_initial_channel=channels,
             resblock_kernel_sizes=[3, 5, 7], resblock_dilation_sizes=[[1, 3], [1, 3], [1, 3]])
    model = BigVGAN(h)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv1d | torch.nn.ConvTranspose1d):
            m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.2
    for m in model.modules():
        if isinstance(m, SnakeBeta):
            m.alpha.data = torch.randn(m.alpha.shape, generator=g) * 0.3
            m.beta.data = torch.randn(m.beta.shape, generator=g) * 0.3
    return model.prepare_for_inference()


def _snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, err = ref.astype(np.float64), got.astype(np.float64) - ref
    return float(10 * np.log10((ref ** 2).sum() / max((err ** 2).sum(), 1e-300)))


@pytest.mark.parametrize("frames", [1, 2, 5, 17])
def test_polyphase_bigvgan_equals_reference_and_shares_its_weights(frames):
    model = _tiny_bigvgan()
    fast = polyphase_bigvgan(model)
    mel = torch.randn(1, 80, frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        ref, got = model(mel), fast(mel)
    assert got.shape == ref.shape == (1, 1, 8 * frames)
    assert _snr_db(ref.numpy(), got.numpy()) > 100  # the stage's fp32 gate is 60 dB
    # the reference keeps upstream's formulation; the copy swaps activations only, sharing weights
    assert not any(isinstance(m, PolyphaseActivation1d) for m in model.modules())
    n_acts = sum(isinstance(m, Activation1d) for m in model.modules())
    assert sum(isinstance(m, PolyphaseActivation1d) for m in fast.modules()) == n_acts > 0
    convs = {p.data_ptr() for n, p in model.named_parameters() if not n.endswith((".alpha", ".beta"))}
    assert {p.data_ptr() for p in fast.parameters()} == convs  # α, β live on as the phases' buffers


def test_vocoder_runs_upstream_formulation_eagerly_and_exports_the_polyphase_one(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from indextts_trt.export.onnx_export import export_sizes, export_stage
    from indextts_trt.export.variant import generic_inputs
    from indextts_trt.runtime.indextts2.stages import bigvgan_spec

    model = _tiny_bigvgan(seed=3)
    voc = Vocoder(model).eval()
    mel = torch.randn(1, 80, 6)
    with torch.no_grad():
        assert torch.equal(voc(mel), model(mel))  # eager: the parity gate's reference is upstream's form
    spec = bigvgan_spec(type("Cfg", (), {"hop_length": 8, "n_mels": 80})(), 40)
    path = export_stage(voc, spec, generic_inputs(spec, export_sizes(spec), np.random.default_rng(0)),
                        tmp_path / "bigvgan.onnx", {})
    graph = onnx.load(str(path)).graph
    grouped_transposed = [n for n in graph.node if n.op_type == "ConvTranspose"
                          and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert not grouped_transposed  # upstream's depthwise upsampling is gone from the graph
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames in (1, 3, 11, 40):
        x = np.random.default_rng(frames).standard_normal((1, 80, frames)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert _snr_db(ref, sess.run(None, {"mel": x})[0]) > 90  # fp32: 96.1 dB on this session's AVX-512 machine (seeded, repeatable); >100 on earlier ones; gate 60 dB


@pytest.mark.parametrize("c_in,c_out,k,stride,padding,dilation,groups", [
    (16, 32, 3, 1, 1, 1, 1), (32, 16, 11, 1, 15, 3, 1), (16, 32, 7, 1, 0, 1, 16), (32, 16, 7, 1, 0, 1, 16),
    (48, 48, 5, 2, 2, 5, 3), (16, 8, 3, 1, 1, 1, 1), (24, 24, 3, 1, 1, 1, 1)])
def test_conv1d_helper_equals_conv1d_in_2d_and_stays_1d_off_the_block(c_in, c_out, k, stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(c_in * c_out + k)
    x = torch.randn(2, c_in, 37, generator=g)
    w, b = torch.randn(c_out, c_in // groups, k, generator=g), torch.randn(c_out, generator=g)
    ref = torch.nn.functional.conv1d(x, w, b, stride, padding, dilation, groups)
    got = conv1d(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    from torch.fx.experimental.proxy_tensor import make_fx  # what the traced graph computes with

    ops = {str(n.target) for n in make_fx(conv1d)(x, w, b, stride, padding, dilation, groups).graph.nodes}
    two_d = c_in % BLOCK == 0 and c_out % BLOCK == 0
    assert any("unsqueeze" in o for o in ops) == two_d  # 2-D over (B, C, 1, T) exactly on the block


def test_exported_convolutions_are_2d_on_block_multiples_only(tmp_path):
    """A BigVGAN whose first stage has 16 channels and second 8: the graph has 2-D convolutions
    where both channel counts are multiples of 16 and 1-D ones elsewhere, and equals upstream's."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    from indextts_trt.export.onnx_export import export_sizes, export_stage
    from indextts_trt.export.variant import generic_inputs
    from indextts_trt.runtime.indextts2.stages import bigvgan_spec

    model = _tiny_bigvgan(seed=5, channels=32)
    spec = bigvgan_spec(type("Cfg", (), {"hop_length": 8, "n_mels": 80})(), 40)
    path = export_stage(Vocoder(model).eval(), spec, generic_inputs(spec, export_sizes(spec), np.random.default_rng(0)),
                        tmp_path / "bigvgan.onnx", {})
    graph = onnx.load(str(path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    ranks = {}
    for n in graph.node:
        if n.op_type == "Conv" and n.input[1] in weights:
            w = weights[n.input[1]]
            groups = next((a.i for a in n.attribute if a.name == "group"), 1)
            ranks.setdefault(w.ndim, set()).add((w.shape[1] * groups, w.shape[0]))
    assert set(ranks) == {3, 4}
    assert all(i % BLOCK == 0 and o % BLOCK == 0 for i, o in ranks[4])
    assert all(i % BLOCK or o % BLOCK for i, o in ranks[3])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames in (1, 4, 23):
        x = np.random.default_rng(frames).standard_normal((1, 80, frames)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert _snr_db(ref, sess.run(None, {"mel": x})[0]) > 90
