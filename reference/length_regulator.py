"""S2Mel length regulator for continuous input (ARCHITECTURE.md §4.1).

``content_in_proj`` → legacy nearest interpolation to an explicit target length → 4 × [Conv1d k3,
GroupNorm(1), Mish] + Conv1d k1 → length mask. The interpolation is written as a gather with
``src = floor(dst · T_in / T_out)`` — exactly ``F.interpolate(mode='nearest', size=T_out)`` — so
the exported graph takes the target length as an input instead of a data-dependent Resize size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig


def nearest_indices(t_in: int | Tensor, t_out: int | Tensor) -> Tensor:
    """PyTorch legacy 'nearest': src = floor(dst * (T_in / T_out)), computed in float32 as torch does."""
    t_out_t = torch.as_tensor(t_out)
    dst = torch.arange(int(t_out_t), dtype=torch.float32)
    scale = torch.as_tensor(t_in, dtype=torch.float32) / t_out_t.to(torch.float32)
    return torch.clamp((dst * scale).floor().long(), max=int(t_in) - 1)


class InterpolateRegulator(nn.Module):
    def __init__(self, cfg: IndexTTSConfig):
        super().__init__()
        lr = cfg.s2mel.length_regulator
        c = lr.channels
        layers: list[nn.Module] = []
        for _ in lr.sampling_ratios:
            layers += [nn.Conv1d(c, c, 3, 1, 1), nn.GroupNorm(1, c), nn.Mish()]
        layers.append(nn.Conv1d(c, c, 1, 1))
        self.model = nn.Sequential(*layers)
        self.embedding = nn.Embedding(lr.content_codebook_size, c)  # unused (discrete input), in s2mel.pth
        self.mask_token = nn.Parameter(torch.zeros(1, c))  # unused, in s2mel.pth
        self.content_in_proj = nn.Linear(lr.in_channels, c)

    def forward(self, x: Tensor, target_len: int | Tensor) -> Tensor:
        """x (B, T_in, in_channels) → (B, T_out, channels); every frame valid for B = 1."""
        x = self.content_in_proj(x).transpose(1, 2)  # (B, C, T_in)
        x = x.index_select(2, nearest_indices(x.shape[2], target_len))
        return self.model(x).transpose(1, 2)  # the length mask is all ones for one sequence
