"""The S2Mel flow-matching solver on the host: Euler steps with classifier-free guidance.

As upstream's ``solve_euler``: the prompt frames of ``x`` are zeroed before the loop and after every
step; each step is one estimator call on the CFG batch [cond; uncond] (the uncond half has prompt,
style and condition zeroed, ``x`` and ``t`` shared), combined as v = (1 + r)·v_cond − r·v_uncond;
``t`` advances by float32 ``linspace`` steps. The noise is drawn with numpy (:func:`cfm_noise`) so
the PyTorch reference and the runtime start from the same values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# velocity(x_batch (2, n_mels, T), t_batch (2,)) -> (2, n_mels, T): one estimator call on the CFG batch;
# the constant inputs (prompt, style, condition, lengths) are bound by the caller once per segment
Velocity = Callable[[np.ndarray, np.ndarray], np.ndarray]


def cfm_noise(seed: int, n_mels: int, frames: int) -> np.ndarray:
    """The CFM's initial noise (1, n_mels, frames). Drawn frame-major so a longer draw extends a
    shorter one: frame f gets the same noise whatever the total length, which code-chunk
    streaming relies on."""
    return np.random.default_rng(seed).standard_normal((frames, n_mels)).astype(np.float32).T[None].copy()


def cfg_batch(cond: np.ndarray) -> np.ndarray:
    """[cond; zeros]: the unconditional half of the CFG batch sees no prompt, style or condition."""
    return np.concatenate([cond, np.zeros_like(cond)])


def solve_euler(velocity: Velocity, x: np.ndarray, prompt_frames: int, steps: int, cfg_rate: float) -> np.ndarray:
    """Integrate ``x`` (1, n_mels, T) from t=0 to 1 in ``steps`` Euler steps; returns the mel with
    the prompt frames zero."""
    x = x.copy()
    x[..., :prompt_frames] = 0
    t_span = np.linspace(0, 1, steps + 1, dtype=np.float32)
    t = t_span[0]
    for i in range(1, steps + 1):
        dt = t_span[i] - t_span[i - 1]
        v = velocity(np.concatenate([x, x]), np.full(2, t, np.float32))
        x = x + dt * ((1.0 + cfg_rate) * v[:1] - cfg_rate * v[1:])
        t = t + dt
        x[..., :prompt_frames] = 0
    return x


__all__ = ["cfm_noise", "cfg_batch", "solve_euler", "Velocity"]
