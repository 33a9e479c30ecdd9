"""The S2Mel flow-matching solver loop: Euler steps with classifier-free guidance.

As upstream's ``solve_euler``: the prompt frames of ``x`` are zeroed before the loop and after every
step; each step evaluates the estimator on the CFG batch [cond; uncond] (the uncond half has prompt,
style and condition zeroed, ``x`` and ``t`` shared), combined as v = (1 + r)·v_cond − r·v_uncond;
``t`` advances by float32 ``linspace`` steps. The step itself is one graph (``dit_step``); this loop
only sequences it. The noise is drawn with numpy (:func:`cfm_noise`) so the PyTorch reference and
the runtime start from the same values.
"""

from __future__ import annotations

import numpy as np


def cfm_noise(seed: int, n_mels: int, frames: int) -> np.ndarray:
    """The CFM's initial noise (1, n_mels, frames). Drawn frame-major so a longer draw extends a
    shorter one: frame f gets the same noise whatever the total length, which code-chunk
    streaming relies on."""
    return np.random.default_rng(seed).standard_normal((frames, n_mels)).astype(np.float32).T[None].copy()


def euler_times(steps: int):
    """(t, dt) of each Euler step, float32 as upstream: ``dt`` from ``linspace``, ``t`` advanced by
    adding it (not read from the span). The serial loop and the serving batcher both use this."""
    t_span = np.linspace(0, 1, steps + 1, dtype=np.float32)
    t = t_span[0]
    for i in range(1, steps + 1):
        dt = t_span[i] - t_span[i - 1]
        yield t, dt
        t = t + dt


def zero_prompt(x: np.ndarray, prompt_len: np.ndarray) -> np.ndarray:
    """A copy of ``x`` (B, n_mels, T) with each row's prompt frames zeroed (upstream, before the
    first step too)."""
    x = x.copy()
    in_prompt = np.arange(x.shape[-1])[None, :] < prompt_len[:, None]  # (B, T)
    x[np.broadcast_to(in_prompt[:, None, :], x.shape)] = 0
    return x


def solve_euler(run, x: np.ndarray, prompt_len: np.ndarray, steps: int) -> np.ndarray:
    """Integrate ``x`` (B, n_mels, T) from t=0 to 1 in ``steps`` Euler steps of the stage graph
    ``dit_step`` (one whole step: CFG batch, guided velocity, update, prompt frames zeroed), whose
    constant inputs the caller has set on the runner. ``run(feed, fetch)`` runs the stage with its
    output ``x_next`` fed back as the next ``x`` (on the device where the backend has one); only the
    last step's ``x`` comes back. Returns the mel with each row's prompt frames zero."""
    x = zero_prompt(x, prompt_len)
    b = x.shape[0]
    for i, (t, dt) in enumerate(euler_times(steps)):
        feed = {"t": np.full(b, t, np.float32), "dt": np.full(b, dt, np.float32)}
        if i == 0:
            feed["x"] = x
        out = run(feed, ("x_next",) if i == steps - 1 else ())
    return out["x_next"]


__all__ = ["cfm_noise", "euler_times", "zero_prompt", "solve_euler"]
