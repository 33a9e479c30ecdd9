"""IndexTTS-2.5's S2Mel: ``MyModel(cfg.s2mel)`` = {cfm, length_regulator}, no ``gpt_layer``.

The DiT, the CFM solver and the length regulator are 2.0's modules unchanged (same config
section, same ``s2mel.pth`` container and key names). What 2.5 changes is their inputs:
- the prompt condition regulates the *raw* normalized w2v-bert features of the prompt (2.0: the
  semantic codec's quantized embedding), to the prompt's mel length;
- the generated condition regulates ``codec.decode(codes)`` (2N frames at 50 Hz; no GPT latents:
  upstream removed the ``use_gpt_latent`` path in a16fe86 because the 25 Hz latents cannot be added
  to the 50 Hz features) to ``int(2N · 1.72 · duration_factor)`` frames.
The released file still carries the six ``gpt_layer`` tensors (a16fe86's message); the writer
keeps them (2.0's writer) and the loader ignores them, as upstream's loader skips sub-dicts the
model does not build.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from indextts_trt.runtime.indextts25.config import IndexTTS25Config, target_mel_length_v25

from ..cfm import cfm_inference
from ..length_regulator import InterpolateRegulator
from ..s2mel import CFM, S2Mel, load_s2mel, write_random_s2mel


class S2Mel25(nn.Module):
    def __init__(self, cfg: IndexTTS25Config):
        super().__init__()
        self.cfg = cfg
        self.models = nn.ModuleDict({"cfm": CFM(cfg), "length_regulator": InterpolateRegulator(cfg)})

    estimator = S2Mel.estimator  # the same accessors as 2.0's container
    length_regulator = S2Mel.length_regulator

    def prompt_condition(self, spk_cond_emb: Tensor, ref_mel_len: int) -> Tensor:
        """(1, T50, hidden) normalized w2v-bert features → (1, T_ref, channels)."""
        return self.length_regulator(spk_cond_emb, ref_mel_len)

    @torch.no_grad()
    def infer(self, codes_feat: Tensor, prompt_condition: Tensor, ref_mel: Tensor, style: Tensor,
              duration_factor: float = 1.0, n_steps: int = 25, cfg_rate: float = 0.7, noise: Tensor | None = None,
              generator: torch.Generator | None = None) -> Tensor:
        """codec.decode(codes) (1, 2N, hidden) → generated mel (1, n_mels, T_gen)."""
        if codes_feat.shape[1] % 2:  # decode always yields 2N frames; keep upstream's formula honest
            raise ValueError(f"codes_feat has {codes_feat.shape[1]} frames; codec.decode gives an even count")
        target = target_mel_length_v25(codes_feat.shape[1] // 2, duration_factor)
        cond = self.length_regulator(codes_feat, target)
        mu = torch.cat([prompt_condition, cond], dim=1)
        mel = cfm_inference(self.estimator, mu, ref_mel, style, n_steps, cfg_rate, noise=noise, generator=generator)
        return mel[:, :, ref_mel.shape[-1]:]


def build_s2mel_v25(cfg: IndexTTS25Config) -> S2Mel25:
    return S2Mel25(cfg).eval()


def write_random_s2mel_v25(cfg: IndexTTS25Config, path: str | Path, seed: int) -> None:
    """The released container: ``{"net": {cfm, length_regulator, gpt_layer}, ...}`` (2.0's writer)."""
    write_random_s2mel(cfg, path, seed)


def load_s2mel_v25(path: str | Path, cfg: IndexTTS25Config) -> S2Mel25:
    return load_s2mel(path, cfg, S2Mel25)
