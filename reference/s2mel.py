"""S2Mel container: ``net`` = {cfm (the DiT estimator), length_regulator, gpt_layer} (§4), and
``s2mel.pth`` I/O. Upstream drops keys whose shape mismatches and loads with strict=False; we
fail and name them instead (a stated deviation)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from indextts_trt.runtime.indextts2.config import IndexTTSConfig, target_mel_length

from .cfm import cfm_inference
from .checkpoint_io import (
    CheckpointError,
    expect_mapping,
    fold_weight_norm_keys,
    load_pickled,
    load_strict,
    strip_prefix,
    torch_save,
    unfold_weight_norm_keys,
)
from .dit import DiT, weight_norm_layers
from .length_regulator import InterpolateRegulator


class CFM(nn.Module):
    def __init__(self, cfg: IndexTTSConfig):
        super().__init__()
        self.estimator = DiT(cfg)


def build_gpt_layer(cfg: IndexTTSConfig) -> nn.Sequential:
    # widths 256 and 128 are upstream's hard-coded ones
    return nn.Sequential(nn.Linear(cfg.gpt.model_dim, 256), nn.Linear(256, 128), nn.Linear(128, cfg.semantic_dim))


class S2Mel(nn.Module):
    def __init__(self, cfg: IndexTTSConfig):
        super().__init__()
        self.cfg = cfg
        self.models = nn.ModuleDict({"cfm": CFM(cfg), "length_regulator": InterpolateRegulator(cfg),
                                     "gpt_layer": build_gpt_layer(cfg)})

    @property
    def estimator(self) -> DiT:
        return self.models["cfm"].estimator

    @property
    def length_regulator(self) -> InterpolateRegulator:
        return self.models["length_regulator"]

    @property
    def gpt_layer(self) -> nn.Sequential:
        return self.models["gpt_layer"]

    @torch.no_grad()
    def infer(self, latent: Tensor, codes_emb: Tensor, prompt_condition: Tensor, ref_mel: Tensor, style: Tensor,
              n_steps: int, cfg_rate: float, noise: Tensor | None = None,
              generator: torch.Generator | None = None) -> Tensor:
        """GPT latents (1, N, D) + vq2emb(codes) (1, N, semantic_dim) → generated mel (1, n_mels, T_gen)."""
        s_infer = codes_emb + self.gpt_layer(latent)
        cond = self.length_regulator(s_infer, target_mel_length(latent.shape[1]))
        mu = torch.cat([prompt_condition, cond], dim=1)
        mel = cfm_inference(self.estimator, mu, ref_mel, style, n_steps, cfg_rate, noise=noise, generator=generator)
        return mel[:, :, ref_mel.shape[-1]:]


SUBMODULES = ("cfm", "length_regulator", "gpt_layer")


def build_s2mel(cfg: IndexTTSConfig) -> S2Mel:
    return S2Mel(cfg).eval()


def write_s2mel(model: S2Mel, path: str | Path) -> None:
    wn = weight_norm_layers(model.cfg)
    net = {}
    for name in SUBMODULES:
        sd = {k: v.detach().clone() for k, v in model.models[name].state_dict().items()}
        net[name] = unfold_weight_norm_keys(sd, wn) if name == "cfm" else sd
    torch_save({"net": net, "iters": 0, "epoch": 0}, path)


def write_random_s2mel(cfg: IndexTTSConfig, path: str | Path, seed: int) -> None:
    torch.manual_seed(seed)
    write_s2mel(build_s2mel(cfg), path)


def load_s2mel(path: str | Path, cfg: IndexTTSConfig, cls: type = S2Mel) -> S2Mel:
    """Each sub-dict of ``net`` the model builds, strictly; others are ignored (as upstream's
    ``load_checkpoint2`` ignores what the model does not build)."""
    obj, path = load_pickled(path, "s2mel checkpoint")
    net = expect_mapping(obj, path, "net")
    model = cls(cfg)
    for name in model.models:
        if name not in net:
            raise CheckpointError(f"{path}: net has no '{name}' sub-dict (found {sorted(net)})")
        sd = strip_prefix(expect_mapping(net[name], f"{path}[net][{name}]"))
        sd = fold_weight_norm_keys(sd)
        load_strict(model.models[name], sd, f"{path} [net][{name}]")
    return model.eval()
