"""Conditional flow matching inference: the Euler solver with classifier-free guidance (§4.4).

As upstream's ``solve_euler``: the prompt frames of x are zeroed before the loop and after every
step; CFG is one batched estimator call on [cond; uncond] where the uncond half has prompt, style
and mu zeroed (x and t identical); v = (1 + r)·v_cond − r·v_uncond; t advances by the float32
``linspace`` steps. The noise is an input (or drawn from a seeded generator) so runs are exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Estimator = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def cfg_velocity(estimator: Estimator, x: Tensor, prompt_x: Tensor, x_lens: Tensor, t: Tensor, style: Tensor,
                 mu: Tensor, cfg_rate: float) -> Tensor:
    """One guided velocity: a single estimator call on the stacked batch of 2·B."""
    if cfg_rate <= 0:
        return estimator(x, prompt_x, x_lens, t.expand(x.shape[0]), style, mu)
    v = estimator(torch.cat([x, x]), torch.cat([prompt_x, torch.zeros_like(prompt_x)]), torch.cat([x_lens, x_lens]),
                  t.expand(2 * x.shape[0]), torch.cat([style, torch.zeros_like(style)]),
                  torch.cat([mu, torch.zeros_like(mu)]))
    v_c, v_u = v.chunk(2, dim=0)
    return (1.0 + cfg_rate) * v_c - cfg_rate * v_u


def euler_step(estimator: Estimator, x: Tensor, prompt_x: Tensor, x_lens: Tensor, prompt_len: Tensor, t: Tensor,
               dt: Tensor, style: Tensor, mu: Tensor, cfg_rate: Tensor | float) -> tuple[Tensor, Tensor]:
    """One Euler step of B requests at once (upstream's loop body, batched): the guided velocity
    on the CFG batch [x; x] (cfg_velocity), then x + dt·v with each row's prompt frames zeroed.
    x, prompt_x (B, n_mels, T); x_lens, prompt_len, t, dt (B,); style (B, S); mu (B, T, C) →
    (x_next, v), both (B, n_mels, T)."""
    b, T = x.shape[0], x.shape[-1]
    v = estimator(torch.cat([x, x]), torch.cat([prompt_x, torch.zeros_like(prompt_x)]), torch.cat([x_lens, x_lens]),
                  torch.cat([t, t]), torch.cat([style, torch.zeros_like(style)]), torch.cat([mu, torch.zeros_like(mu)]))
    v = (1.0 + cfg_rate) * v[:b] - cfg_rate * v[b:]
    x_next = x + dt[:, None, None] * v
    in_prompt = torch.arange(T, device=x.device)[None, None, :] < prompt_len[:, None, None]
    return torch.where(in_prompt, torch.zeros_like(x_next), x_next), v


@torch.no_grad()
def cfm_inference(estimator: Estimator, mu: Tensor, prompt: Tensor, style: Tensor, n_steps: int,
                  cfg_rate: float, temperature: float = 1.0, noise: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """mu (1, T, C), prompt (1, n_mels, T_ref), style (1, S) → mel (1, n_mels, T) (prompt frames zero)."""
    b, T = mu.shape[0], mu.shape[1]
    n_mels = prompt.shape[1]
    if noise is None:
        noise = torch.randn(b, n_mels, T, generator=generator)
    x = noise.to(mu.dtype) * temperature
    t_span = torch.linspace(0, 1, n_steps + 1)
    prompt_len = prompt.shape[-1]
    prompt_x = torch.zeros_like(x)
    prompt_x[..., :prompt_len] = prompt[..., :prompt_len]
    x[..., :prompt_len] = 0
    x_lens = torch.full((b,), T, dtype=torch.long)
    t = t_span[0]
    lens_p = torch.full((b,), prompt_len, dtype=torch.long)
    for step in range(1, len(t_span)):
        dt = t_span[step] - t_span[step - 1]
        if cfg_rate > 0:  # the same arithmetic as the exported step graph (export/indextts2/adapters.py)
            x, _ = euler_step(estimator, x, prompt_x, x_lens, lens_p, t.expand(b), dt.expand(b), style, mu, cfg_rate)
        else:  # upstream calls the estimator once, without the CFG batch
            x = x + dt * cfg_velocity(estimator, x, prompt_x, x_lens, t.reshape(1), style, mu, cfg_rate)
            x[:, :, :prompt_len] = 0
        t = t + dt
    return x
