"""BigVGAN v2 vocoder (nvidia/bigvgan_v2_22khz_80band_256x), ARCHITECTURE.md §5.

SnakeBeta activations with log-scale α, β (``exp`` taken once in :meth:`prepare_for_inference`,
so an exported graph has no exp of parameters), anti-aliased ×2 up/down-sampling with the stored
Kaiser-sinc filters (expanded to depthwise weights once, not per forward: FACTS.md notes that a
per-forward ``expand(C, ...)`` breaks the TorchScript exporter), AMPBlock1 resblocks, clamp at the
end. Checkpoints hold weight_g/weight_v; they are folded at load (ConvTranspose1d included: its
dim 0 is the input-channel axis).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig

from .checkpoint_io import (
    CheckpointError,
    expect_mapping,
    fold_weight_norm_keys,
    load_pickled,
    load_strict,
    read_json,
    torch_save,
    unfold_weight_norm_keys,
)


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> Tensor:
    even = kernel_size % 2 == 0
    half = kernel_size // 2
    a = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    beta = 0.1102 * (a - 8.7) if a > 50.0 else (0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21.0) if a >= 21.0 else 0.0)
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = (torch.arange(-half, half) + 0.5) if even else (torch.arange(kernel_size) - half)
    filt = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (filt / filt.sum()).view(1, 1, kernel_size)


class SnakeBeta(nn.Module):
    """y = x + 1/(β + 1e-9) · sin²(α·x), α = exp(alpha), β = exp(beta) (log-scale parameters)."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))
        self.register_buffer("a", torch.ones(1, channels, 1), persistent=False)
        self.register_buffer("inv_b", torch.ones(1, channels, 1), persistent=False)
        self.prepare()

    @torch.no_grad()
    def prepare(self) -> None:
        a, b = (self.alpha.exp(), self.beta.exp()) if self.logscale else (self.alpha, self.beta)
        self.a.copy_(a.view(1, -1, 1))
        self.inv_b.copy_((1.0 / (b + 1e-9)).view(1, -1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.inv_b * torch.sin(x * self.a).pow(2)


class UpSample1d(nn.Module):
    def __init__(self, channels: int, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio, self.pad = ratio, kernel_size // ratio - 1
        self.pad_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.pad_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, kernel_size))
        self.register_buffer("weight", self.filter.expand(channels, -1, -1).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.weight, stride=self.ratio, groups=x.shape[1])
        return x[..., self.pad_left : x.shape[-1] - self.pad_right]


class LowPassFilter1d(nn.Module):
    def __init__(self, channels: int, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.stride = ratio
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, kernel_size))
        self.register_buffer("weight", self.filter.expand(channels, -1, -1).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.weight, stride=self.stride, groups=x.shape[1])


class DownSample1d(nn.Module):
    def __init__(self, channels: int, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(channels, ratio, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.lowpass(x)


class Activation1d(nn.Module):
    def __init__(self, channels: int, logscale: bool):
        super().__init__()
        self.act = SnakeBeta(channels, logscale)
        self.upsample = UpSample1d(channels)
        self.downsample = DownSample1d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(self.act(self.upsample(x)))


class AMPBlock1(nn.Module):
    def __init__(self, channels: int, k: int, dilations: list[int], logscale: bool):
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, k, dilation=d, padding=(k * d - d) // 2)
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, k, dilation=1, padding=(k - 1) // 2)
                                    for _ in dilations)
        self.activations = nn.ModuleList(Activation1d(channels, logscale) for _ in range(2 * len(dilations)))

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations[::2], self.activations[1::2]):
            x = x + c2(a2(c1(a1(x))))
        return x


class BigVGAN(nn.Module):
    def __init__(self, h: dict):
        super().__init__()
        if str(h.get("resblock")) != "1":
            raise CheckpointError(f"BigVGAN resblock type {h.get('resblock')!r} is not supported (only '1', AMPBlock1)")
        if h.get("activation", "snakebeta") != "snakebeta":
            raise CheckpointError(f"BigVGAN activation {h.get('activation')!r} is not supported (only 'snakebeta')")
        self.h = h
        logscale = bool(h.get("snake_logscale", True))
        ch = h["upsample_initial_channel"]
        self.num_kernels = len(h["resblock_kernel_sizes"])
        self.conv_pre = nn.Conv1d(h["num_mels"], ch, 7, 1, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])):
            cin, cout = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(nn.ModuleList([nn.ConvTranspose1d(cin, cout, k, u, padding=(k - u) // 2)]))
            for rk, rd in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
                self.resblocks.append(AMPBlock1(cout, rk, rd, logscale))
        self.activation_post = Activation1d(cout, logscale)
        self.use_bias_at_final = bool(h.get("use_bias_at_final", True))
        self.use_tanh_at_final = bool(h.get("use_tanh_at_final", True))
        self.conv_post = nn.Conv1d(cout, 1, 7, 1, padding=3, bias=self.use_bias_at_final)

    def prepare_for_inference(self) -> BigVGAN:
        for m in self.modules():
            if isinstance(m, SnakeBeta):
                m.prepare()
        return self.eval()

    def forward(self, mel: Tensor) -> Tensor:
        """mel (B, n_mels, T) → wav (B, 1, T · prod(upsample_rates)) in [-1, 1]."""
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up[0](x)
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.use_tanh_at_final else torch.clamp(x, -1.0, 1.0)

    def weight_norm_names(self) -> list[str]:
        return [n for n, m in self.named_modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


FULL_CONFIG = {
    "resblock": "1", "num_gpus": 0, "batch_size": 32, "learning_rate": 0.0001, "adam_b1": 0.8, "adam_b2": 0.99,
    "lr_decay": 0.9999996, "seed": 1234, "upsample_rates": [4, 4, 2, 2, 2, 2],
    "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4], "upsample_initial_channel": 1536,
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "use_tanh_at_final": False, "use_bias_at_final": False, "activation": "snakebeta", "snake_logscale": True,
    "use_cqtd_instead_of_mrd": True, "cqtd_filters": 128, "cqtd_max_filters": 1024, "cqtd_filters_scale": 1,
    "cqtd_dilations": [1, 2, 4], "cqtd_hop_lengths": [512, 256, 256], "cqtd_n_octaves": [9, 9, 9],
    "cqtd_bins_per_octaves": [24, 36, 48], "mpd_reshapes": [2, 3, 5, 7, 11], "use_spectral_norm": False,
    "discriminator_channel_mult": 1, "use_multiscale_melloss": True, "lambda_melloss": 15,
    "clip_grad_norm": 500, "segment_size": 65536, "num_mels": 80, "num_freq": 1025, "n_fft": 1024,
    "hop_size": 256, "win_size": 1024, "sampling_rate": 22050, "fmin": 0, "fmax": None, "fmax_for_loss": None,
    "num_workers": 4, "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
}
TINY_OVERRIDES = {"upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8], "upsample_initial_channel": 48,
                  "resblock_kernel_sizes": [3, 7], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]]}


def write_random_bigvgan(cfg: IndexTTSConfig, out_dir: str | Path, seed: int, size: str) -> None:
    torch.manual_seed(seed)
    h = dict(FULL_CONFIG, **({} if size == "full" else TINY_OVERRIDES))
    model = BigVGAN(h)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():  # log-scale α, β near 0 (α, β ≈ 1), as trained models are
        if isinstance(m, SnakeBeta):
            m.alpha.data = torch.randn(m.alpha.shape, generator=g) * 0.1
            m.beta.data = torch.randn(m.beta.shape, generator=g) * 0.1
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(h, indent=2))
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch_save({"generator": unfold_weight_norm_keys(sd, model.weight_norm_names())}, out_dir / "bigvgan_generator.pt")


def load_bigvgan(model_dir: str | Path, cfg: IndexTTSConfig | None = None) -> BigVGAN:
    model_dir = Path(model_dir)
    conf = model_dir / "config.json"
    h = read_json(conf, "BigVGAN config")
    if cfg is not None:
        if h.get("num_mels") != cfg.n_mels:
            raise CheckpointError(f"{conf}: num_mels {h.get('num_mels')} != {cfg.n_mels} mel bands of config.yaml")
        if math.prod(h.get("upsample_rates", [])) != cfg.hop_length:
            raise CheckpointError(f"{conf}: upsample_rates {h.get('upsample_rates')} do not multiply to hop length "
                                  f"{cfg.hop_length}")
    obj, weights = load_pickled(model_dir / "bigvgan_generator.pt", "BigVGAN weights")
    sd = expect_mapping(obj, weights, "generator")
    model = BigVGAN(h)
    # weight-normed (released) or already folded (a remove_weight_norm'd save): accept both
    load_strict(model, fold_weight_norm_keys(sd), str(weights))
    return model.prepare_for_inference()
