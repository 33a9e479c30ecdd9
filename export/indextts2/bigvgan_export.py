"""BigVGAN's anti-aliased activation in polyphase form, and its convolutions in 2-D where that is
faster, for the exported graph only.

The reference ``Activation1d`` (upstream's formulation) upsamples ×2 with a depthwise
``ConvTranspose1d`` (12 taps, stride 2) between a replicate pad and a crop, applies SnakeBeta, and
low-passes with a depthwise stride-2 ``Conv1d`` after another replicate pad. ONNX Runtime's CPU
provider runs those two depthwise ops through im2col/col2im (a 12× expanded copy of the signal per
channel): on the full-size model they cost a third of the graph's time, and the graph was slower
than torch (benchmarks/results/bigvgan-cpu-profile.md).

The same arithmetic, rearranged (every output sample is the same sum of the same products; only
the summation order can differ, by float32 rounding):

* **upsample**: output 2i of the transposed convolution takes the odd taps of the filter, output
  2i+1 the even ones (polyphase), so one grouped stride-1 ``Conv1d`` (each channel → its two
  phases, 7 taps, one of them zero) over the input replicate-padded by 3 gives both phases at
  once, with no crop and no col2im. Upstream's ×2 gain is folded into the taps (exact: a power of 2).
* **SnakeBeta** runs on the phases, channel-wise as before (α and 1/(β+ε) repeated per phase);
  ``sin(·)²`` as ``s * s`` (what ``pow(s, 2)`` computes).
* **downsample**: the stride-2 low-pass of the interleaved signal is the even taps applied to one
  phase plus the odd taps applied to the other, so one grouped stride-1 ``Conv1d`` (two phases →
  one channel, 7 taps) computes it without interleaving. The replicate pad of the interleaved
  signal becomes: 3 samples of the first value (the even phase's first) on the left of both
  phases, 3 of the last value (the odd phase's last) on the right.

**Dense and grouped convolutions as 2-D** (``conv1d``): a 1-D convolution whose input and
output channels are multiples of 16 is exported as a 2-D one over (B, C, 1, T) with a (1, k)
kernel: ONNX Runtime's CPU provider then runs it with its blocked NCHWc kernels (its layout
transformer takes 2-D convolutions only) instead of im2col + GEMM. The same products and sums
(zero padding and dilation on the time axis only), float32 rounding apart. Measured at full size,
2 threads, on a quiet machine, the whole vocoder against upstream's in torch: 0.96–0.98× →
1.04–1.05× at 70, 200 and 600 mel frames (benchmarks/results/bigvgan-cpu-profile.md). Channel counts off the multiple (the
last stage's 24, the 1-channel output) stay 1-D: there the blocked kernels lose (measured slower
at 24 channels), which is also why this is not applied to every convolution.

``tests/test_bigvgan_export.py`` checks this against the reference formulation on tiny odd-sized
random weights at several lengths, and the build's parity gate checks the exported graph against
the reference (the ``Vocoder`` adapter runs upstream's formulation in eager mode, this one only
while being exported).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indextts_trt.reference.bigvgan import Activation1d, BigVGAN

_PAD = 3  # the phases' taps reach 3 input samples either side of the output's own


class PolyphaseActivation1d(nn.Module):
    """``Activation1d`` (ratio 2, 12-tap filters) as two grouped stride-1 convolutions."""

    def __init__(self, act: Activation1d):
        super().__init__()
        up, low = act.upsample, act.downsample.lowpass
        h, g = up.filter.flatten().double(), low.filter.flatten().double()
        if up.ratio != 2 or low.stride != 2 or h.numel() != 12 or g.numel() != 12:
            raise ValueError(f"polyphase activation: ratio 2 with 12-tap filters only, not ratio {up.ratio}, "
                             f"{h.numel()}/{g.numel()} taps")
        channels = up.weight.shape[0]
        # upstream upsample, output n = 2i + p of a signal x padded by 5 (replicate), cropped by 15:
        # 2 · Σ_m xpad[m] h[n + 15 - 2m]. Over x padded by 3 (xq[u] = x[u - 3]) that is
        # even:  Σ_{t<6} 2 h[11 - 2t] · xq[i + t],   odd:  Σ_{t<6} 2 h[10 - 2t] · xq[i + 1 + t]
        w_up = torch.zeros(2, 7, dtype=torch.float64)
        for t in range(6):
            w_up[0, t] = 2 * h[11 - 2 * t]
            w_up[1, t + 1] = 2 * h[10 - 2 * t]
        # upstream low-pass, out[i] = Σ_k g[k] · s[2i + k - 5] (s replicate-padded by 5 | 6): the odd
        # taps meet even samples E[i + j - 2], the even taps odd samples O[i + j - 3]; over the
        # phases padded by 3 that is Σ_j g[2j + 1] · Epad[i + j + 1] + Σ_j g[2j] · Opad[i + j]
        w_down = torch.zeros(2, 7, dtype=torch.float64)
        for j in range(6):
            w_down[0, j + 1] = g[2 * j + 1]
            w_down[1, j] = g[2 * j]
        # (2C, 1, 7): channel c's two phases are output channels 2c (even) and 2c + 1 (odd)
        self.register_buffer("w_up", w_up.float().repeat(channels, 1).unsqueeze(1))
        self.register_buffer("w_down", w_down.float().unsqueeze(0).repeat(channels, 1, 1))  # (C, 2, 7)
        snake = act.act
        self.register_buffer("a", snake.a.repeat_interleave(2, dim=1).clone())  # (1, 2C, 1)
        self.register_buffer("inv_b", snake.inv_b.repeat_interleave(2, dim=1).clone())
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        c, t = self.channels, x.shape[-1]
        y = conv1d(F.pad(x, (_PAD, _PAD), mode="replicate"), self.w_up, groups=c)  # (B, 2C, T)
        s = torch.sin(y * self.a)
        y = (y + self.inv_b * (s * s)).unflatten(1, (c, 2))  # (B, C, 2, T): [even, odd] phases
        first = y[:, :, 0:1, 0:1].expand(-1, -1, 2, _PAD)  # the interleaved signal's first sample
        last = y[:, :, 1:2, t - 1:t].expand(-1, -1, 2, _PAD)  # and its last
        y = torch.cat([first, y, last], dim=3).flatten(1, 2)  # (B, 2C, T + 6)
        return conv1d(y, self.w_down, groups=c)  # (B, C, T)


BLOCK = 16  # channels per block of ONNX Runtime's NCHWc kernels with AVX-512 (8 with AVX2)


def conv1d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: int = 1, padding: int = 0,
           dilation: int = 1, groups: int = 1) -> Tensor:
    """``F.conv1d``, traced as a 2-D convolution over (B, C, 1, T) when both channel counts are
    multiples of ``BLOCK`` (module docstring)."""
    if x.shape[1] % BLOCK or w.shape[0] % BLOCK:
        return F.conv1d(x, w, b, stride, padding, dilation, groups)
    y = F.conv2d(x.unsqueeze(2), w.unsqueeze(2), b, (1, stride), (0, padding), (1, dilation), groups)
    return y.squeeze(2)


class Conv1dAs2d(nn.Module):
    """An ``nn.Conv1d`` (zero padding) computed by :func:`conv1d`, sharing its parameters."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"Conv1dAs2d: zero padding by a number only, not {conv.padding_mode}/{conv.padding}")
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        return conv1d(x, c.weight, c.bias, c.stride[0], c.padding[0], c.dilation[0], c.groups)


def polyphase_bigvgan(model: BigVGAN) -> BigVGAN:
    """A copy of ``model`` whose activations are polyphase and whose convolutions go through
    :func:`conv1d` (convolution weights shared, not copied)."""
    fast = copy.copy(model)  # a shallow copy: its own module dicts below, the same parameters
    fast._modules = dict(model._modules)
    _replace(fast)
    return fast


def _replace(module: nn.Module) -> None:
    for name, child in list(module._modules.items()):
        if isinstance(child, Activation1d):
            module._modules[name] = PolyphaseActivation1d(child)
        elif type(child) is nn.Conv1d:
            module._modules[name] = Conv1dAs2d(child)
        elif child is not None and any(isinstance(m, (Activation1d, nn.Conv1d)) for m in child.modules()):
            clone = copy.copy(child)
            clone._modules = dict(child._modules)
            module._modules[name] = clone
            _replace(clone)
