"""CAM++ speaker model (3D-Speaker, ``campplus_cn_common.bin``) → the 192-dim style vector (§6.3).

The module tree (and so every key) is upstream's: ``head`` (FCM: a 2-D ResNet over
[freq, time]) and ``xvector`` (TDNN → 3 CAM-dense-TDNN blocks with transit layers → BN-ReLU →
statistics pooling → dense + affine-free BatchNorm). Widths come from ``cfg.campplus``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig

from .checkpoint_io import expect_mapping, load_pickled, load_strict, torch_save


def bn_relu(channels: int, affine: bool = True, relu: bool = True) -> nn.Sequential:
    mods = [("batchnorm", nn.BatchNorm1d(channels, affine=affine))]
    if relu:
        mods.append(("relu", nn.ReLU()))
    return nn.Sequential(OrderedDict(mods))


class BasicResBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=(stride, 1), bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    def __init__(self, m: int, feat_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, m, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        self.layer1 = nn.Sequential(BasicResBlock(m, m, 2), BasicResBlock(m, m, 1))
        self.layer2 = nn.Sequential(BasicResBlock(m, m, 2), BasicResBlock(m, m, 1))
        self.conv2 = nn.Conv2d(m, m, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m)
        self.out_channels = m * (feat_dim // 8)

    def forward(self, x: Tensor) -> Tensor:  # (B, F, T) → (B, m·F/8, T)
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.reshape(out.shape[0], out.shape[1] * out.shape[2], out.shape[3])


class TDNNLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=False)
        self.nonlinear = bn_relu(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    def __init__(self, bn_ch: int, cout: int, k: int, dilation: int, reduction: int = 2):
        super().__init__()
        self.linear_local = nn.Conv1d(bn_ch, cout, k, padding=(k - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_ch, bn_ch // reduction, 1)
        self.linear2 = nn.Conv1d(bn_ch // reduction, cout, 1)

    @staticmethod
    def seg_pooling(x: Tensor, seg_len: int = 100) -> Tensor:
        """Average over 100-frame segments (the last one shorter), broadcast back to every frame."""
        # avg_pool1d(ceil_mode) written as the 2-D pool PyTorch runs it on anyway: same numbers, and an
        # ONNX AveragePool TensorRT parses (it pools 2-D/3-D only)
        seg = F.avg_pool2d(x.unsqueeze(2), (1, seg_len), (1, seg_len), ceil_mode=True).squeeze(2)
        return seg.repeat_interleave(seg_len, dim=-1)[..., : x.shape[-1]]

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear_local(x)
        context = x.mean(-1, keepdim=True) + self.seg_pooling(x)
        m = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return y * m


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, cin: int, cout: int, bn_ch: int, k: int, dilation: int):
        super().__init__()
        self.nonlinear1 = bn_relu(cin)
        self.linear1 = nn.Conv1d(cin, bn_ch, 1, bias=False)
        self.nonlinear2 = bn_relu(bn_ch)
        self.cam_layer = CAMLayer(bn_ch, cout, k, dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bn_ch: int, k: int, dilation: int):
        super().__init__({f"tdnnd{i + 1}": CAMDenseTDNNLayer(cin + i * growth, growth, bn_ch, k, dilation)
                          for i in range(layers)})

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.nonlinear = bn_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x.mean(-1), x.std(-1, unbiased=True)], dim=-1)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = bn_relu(cout, affine=False, relu=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, C) → (B, cout)
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    def __init__(self, cfg: IndexTTSConfig):
        super().__init__()
        c = cfg.campplus
        self.head = FCM(c.m_channels, c.feat_dim)
        ch = self.head.out_channels
        xv: OrderedDict[str, nn.Module] = OrderedDict(tdnn=TDNNLayer(ch, c.init_channels, 5, stride=2))
        ch = c.init_channels
        for i, (n, k, d) in enumerate(zip(c.block_layers, (3, 3, 3), (1, 2, 2))):
            xv[f"block{i + 1}"] = CAMDenseTDNNBlock(n, ch, c.growth_rate, c.bn_size * c.growth_rate, k, d)
            ch += n * c.growth_rate
            xv[f"transit{i + 1}"] = TransitLayer(ch, ch // 2)
            ch //= 2
        xv["out_nonlinear"] = bn_relu(ch)
        xv["stats"] = StatsPool()
        xv["dense"] = DenseLayer(ch * 2, c.embedding_size)
        self.xvector = nn.Sequential(xv)

    def forward(self, feats: Tensor) -> Tensor:
        """feats (B, T, 80) mean-normalized Kaldi fbank → (B, embedding_size)."""
        return self.xvector(self.head(feats.permute(0, 2, 1)))


def build_campplus(cfg: IndexTTSConfig) -> CAMPPlus:
    return CAMPPlus(cfg).eval()


def write_random_campplus(cfg: IndexTTSConfig, path: str | Path, seed: int) -> None:
    torch.manual_seed(seed)
    model = CAMPPlus(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():  # non-trivial running statistics, positive variances
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    torch_save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)


def load_campplus(path: str | Path, cfg: IndexTTSConfig) -> CAMPPlus:
    obj, path = load_pickled(path, "CAMPPlus checkpoint")
    sd = expect_mapping(obj, path)
    model = CAMPPlus(cfg)
    load_strict(model, sd, str(path))
    return model.eval()
