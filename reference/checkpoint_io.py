"""Reading and writing checkpoints in the released containers, with errors that name the file.

Every loader in ``reference/`` goes through these helpers, so a missing file, a truncated
``.pth``, a corrupt ``.safetensors``, an unknown or missing key, or a tensor of the wrong shape
is one :class:`CheckpointError` that names the file and the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from indextts_trt.runtime.errors import UserError
from indextts_trt.runtime.files import atomic_dir  # noqa: F401 - the writers' directory rule, one place


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, unreadable, or does not match the model."""


# ------------------------------------------------------------------------------------------- read


def torch_load(path: str | Path, what: str = "checkpoint") -> object:
    """``torch.load`` with ``weights_only=True`` (no pickle code execution) and clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises RuntimeError/EOFError/UnpicklingError/zipfile errors
        try:  # mmap needs the zip format; the legacy format loads without it
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            pass
        raise CheckpointError(f"{what} {path} is truncated or corrupt: {type(e).__name__}: {e}") from None


def safetensors_load(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{what} {path} is truncated or corrupt: {e}") from None


def read_json(path: str | Path, what: str) -> dict:
    """A JSON config file (HF ``config.json`` style) with errors that name it."""
    import json

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def expect_mapping(obj: object, path: str | Path, key: str | None = None) -> dict:
    """Check that ``obj`` (or ``obj[key]``) is a dict of tensors/dicts; name the file otherwise."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            have = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{path}: expected a dict with key '{key}', found {have}")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}{'[' + repr(key) + ']' if key else ''}: expected a dict, got {type(obj).__name__}")
    return dict(obj)


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    *,
    ignore_unexpected: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> None:
    """Load ``state_dict`` into ``module`` and fail, naming every key, if anything is off.

    ``ignore_unexpected``: key prefixes that may be present but are not used (legacy keys
    upstream tolerates, e.g. ``gpt.h.0.attn.bias``). ``optional``: key prefixes the module has
    but the file may lack (buffers that upstream recomputes).
    """
    own = module.state_dict()
    ign = tuple(ignore_unexpected)
    opt = tuple(optional)
    missing = [k for k in own if k not in state_dict and not k.startswith(opt)] if opt else [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own and not (ign and k.startswith(ign))]
    bad_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_abbrev(missing)}")
    if unexpected:
        problems.append(f"unknown keys ({len(unexpected)}): {_abbrev(unexpected)}")
    if bad_shape:
        problems.append(f"wrong shapes ({len(bad_shape)}): {_abbrev(bad_shape)}")
    if problems:
        raise CheckpointError(f"{source} does not match {type(module).__name__}: " + "; ".join(problems))
    filtered = {k: v for k, v in state_dict.items() if k in own}
    module.load_state_dict(filtered, strict=False)


def _abbrev(items: list[str], n: int = 12) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


# ------------------------------------------------------------------------------------ weight norm


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """w = g * v / ||v||, the norm taken over every axis except ``dim`` (as torch's weight_norm).

    For ConvTranspose1d checkpoints ``dim`` is still 0, which there is the *input*-channel axis.
    """
    axes = [a for a in range(v.dim()) if a != dim]
    norm = v.norm(p=2, dim=axes, keepdim=True) if axes else v.abs()
    return g * (v / norm)


def split_weight_norm(w: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fold_weight_norm` for writing random checkpoints: (g, v) with v = w."""
    axes = [a for a in range(w.dim()) if a != dim]
    g = w.norm(p=2, dim=axes, keepdim=True)
    return g.clone(), w.clone()


def fold_weight_norm_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every ``X.weight_g``/``X.weight_v`` pair by ``X.weight`` (dim 0)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith(".weight_g"):
            continue
        if k.endswith(".weight_v"):
            base = k[: -len(".weight_v")]
            g = sd.get(base + ".weight_g")
            if g is None:
                raise CheckpointError(f"weight norm: '{k}' has no matching '{base}.weight_g'")
            out[base + ".weight"] = fold_weight_norm(g, v, 0)
        else:
            out[k] = v
    return out


def unfold_weight_norm_keys(sd: Mapping[str, torch.Tensor], names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Write ``X.weight`` as ``X.weight_g``/``X.weight_v`` for every module prefix ``X`` in ``names``."""
    names = set(names)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        base = k[: -len(".weight")] if k.endswith(".weight") else None
        if base is not None and base in names:
            g, vv = split_weight_norm(v, 0)
            out[base + ".weight_g"] = g
            out[base + ".weight_v"] = vv
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------------------------------ write


def torch_save(obj: object, path: str | Path) -> None:
    """Save in torch's zip format (what the released ``.pth``/``.pt``/``.bin`` files use)."""
    torch.save(obj, str(path))


def safetensors_save(sd: Mapping[str, torch.Tensor], path: str | Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
