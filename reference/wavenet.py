"""The DiT's WaveNet post-net (S2Mel ``WN``), conditioned on time, with reflect-padded convs.

Each conv is upstream's ``SConv1d``: reflect padding of (k_eff - 1) split (left = total - total//2)
with its small-input fallback (zero-extend, reflect, trim), then a (weight-normed) Conv1d.

Rows of one batch may have different lengths (serving batches the DiT steps of several requests,
each padded to the longest). Upstream reflects at the tensor's end, which for a padded row is not
the row's end: its last frames would read the padding, not their own reflection. So before each
conv the frames just past a row's length are replaced by that row's reflection
(:func:`reflect_tail_index`): a padded row's valid frames are then exactly what the row alone gives
(upstream's case, one row of full length, is the identity and unchanged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def reflect_pad(x: Tensor, left: int, right: int) -> Tensor:
    length = x.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:  # upstream pad1d: reflect needs length > pad, so zero-extend first and trim after
        x = F.pad(x, (0, extra))
    y = F.pad(x, (left, right), mode="reflect")
    return y[..., : y.shape[-1] - extra] if extra else y


def reflect_tail_index(lens: Tensor, T: int) -> Tensor:
    """(B,) lengths → (B, T) source frames: ``p`` inside a row (``p <= L-1``), its reflection
    ``2(L-1) - p`` past it. One triangle wave, ``|(L-1) - |p - (L-1)||``: Abs has INT64 kernels in
    TensorRT, Clip (clamp) does not; far past a row (``p > 2(L-1)``) it folds again, to frames no
    valid output reads."""
    p = torch.arange(T, device=lens.device)[None, :]
    last = (lens[:, None] - 1).to(p.dtype)
    return torch.abs(last - torch.abs(p - last))


class NormConv1d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, dilation=dilation)


class SConv1d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, dilation: int = 1):
        super().__init__()
        self.conv = NormConv1d(cin, cout, k, dilation)  # keys: conv.conv.weight_{g,v}, conv.conv.bias

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv.conv
        total = (conv.kernel_size[0] - 1) * conv.dilation[0]
        right = total // 2
        return conv(reflect_pad(x, total - right, right))


class WN(nn.Module):
    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, gin: int):
        super().__init__()
        self.hidden, self.n_layers = hidden, n_layers
        self.cond_layer = SConv1d(gin, 2 * hidden * n_layers, 1)
        self.in_layers = nn.ModuleList(SConv1d(hidden, 2 * hidden, kernel_size, dilation_rate**i)
                                       for i in range(n_layers))
        self.res_skip_layers = nn.ModuleList(SConv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1)
                                             for i in range(n_layers))

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor, x_lens: Tensor | None = None) -> Tensor:
        """x (B, H, T), x_mask (B, 1, T) float, g (B, gin, 1), x_lens (B,) (None: every row is
        T long) → (B, H, T)."""
        out = torch.zeros_like(x)
        g = self.cond_layer(g)
        h2 = 2 * self.hidden
        src = None if x_lens is None else reflect_tail_index(x_lens, x.shape[-1])[:, None, :].expand_as(x)
        for i in range(self.n_layers):
            xi = x if src is None else torch.gather(x, 2, src)  # each row reflected at its own end
            a = self.in_layers[i](xi) + g[:, i * h2:(i + 1) * h2]
            t_act, s_act = torch.split(a, self.hidden, dim=1)
            acts = torch.tanh(t_act) * torch.sigmoid(s_act)
            rs = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = (x + rs[:, : self.hidden]) * x_mask
                out = out + rs[:, self.hidden:]
            else:
                out = out + rs
        return out * x_mask
