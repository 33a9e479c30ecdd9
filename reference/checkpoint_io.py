"""Reading and writing checkpoints in the released containers, with errors that name the file.

Every loader in ``reference/`` goes through these helpers, so a missing file, a truncated
``.pth``, a corrupt ``.safetensors``, an unknown or missing key, or a tensor of the wrong shape
is one :class:`CheckpointError` that names the file and the key.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from indextts_trt.runtime.errors import UserError
from indextts_trt.runtime.files import atomic_write, safetensors_twin


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, unreadable, or does not match the model."""


# ------------------------------------------------------------------------------------------- read


def torch_load(path: str | Path, what: str = "checkpoint") -> object:
    """``torch.load`` with ``weights_only=True`` (no pickle code execution) and clear errors.

    This is the only place a pickle is read. ``weights_only=True`` admits tensors and plain
    containers only; a file that needs anything else (a pickled object whose ``__reduce__`` would
    run code) is refused, never executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises RuntimeError/EOFError/UnpicklingError/zipfile errors
        pass
    try:  # mmap needs the zip format; the legacy format loads without it
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointError(f"{what} {path} is truncated or corrupt: UnpicklingError: {e}") from None
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[-1])
        raise CheckpointError(
            f"{what} {path} was refused: it holds pickled objects that loading would run as code, not only "
            f"tensors ({why}). It is not a released checkpoint; download it again (`tts-export download`)"
        ) from None
    except Exception as e:
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


# ------------------------------------------------------------ safetensors twins of the pickles
#
# `tts-export convert` writes ``X.safetensors`` beside each released pickle ``X.pth``/``.pt``/
# ``.bin``; every loader reads the twin when it is there (load_pickled). safetensors holds one
# flat {name: tensor} map, so the pickle's nesting is flattened, reversibly:
#   * an entry of a dict, list or tuple at path P is stored under "P/<key or index>"; the root's
#     entries have no prefix: gpt.pth keeps its keys, s2mel.pth's {"net": {"cfm": sd}} becomes
#     "net/cfm/<key>", bigvgan_generator.pt's {"generator": sd} "generator/<key>" (weight_g and
#     weight_v as they are), a bare tensor (feat1.pt) is stored under "";
#   * metadata "indextts_trt.containers" (JSON) names the kind of every container by its path
#     ("" is the root), so empty and non-dict containers come back as they were;
#   * metadata "indextts_trt.values" (JSON) holds the non-tensor leaves (s2mel's "iters": 0).
# Dict keys must be strings without "/"; any other object is refused, naming its path.

NESTING = "indextts-trt/nested-v1"


def converted_path(path: str | Path) -> Path:
    """The safetensors twin of a released pickle: gpt.pth -> gpt.safetensors."""
    return safetensors_twin(path)


def flatten_nested(obj: object, source: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A loaded pickle -> (flat tensors, safetensors metadata); :func:`unflatten_nested` inverts it."""
    tensors: dict[str, torch.Tensor] = {}
    containers: dict[str, str] = {}
    values: dict[str, object] = {}

    def walk(x: object, at: str) -> None:
        if isinstance(x, torch.Tensor):
            tensors[at] = x
        elif isinstance(x, (dict, list, tuple)):
            kind = "dict" if isinstance(x, Mapping) else "list" if isinstance(x, list) else "tuple"
            containers[at] = kind
            items = x.items() if kind == "dict" else enumerate(x)
            for k, v in items:
                if kind == "dict" and not (isinstance(k, str) and k and "/" not in k):
                    raise CheckpointError(f"{source}: key {k!r} under '{at}' cannot be stored in safetensors "
                                          "(dict keys must be non-empty strings without '/')")
                walk(v, f"{at}/{k}" if at else str(k))
        elif x is None or isinstance(x, (bool, int, float, str)):
            values[at] = x
        else:
            raise CheckpointError(f"{source}: '{at}' is a {type(x).__name__}, which safetensors cannot hold")

    walk(obj, "")
    meta = {"indextts_trt.nesting": NESTING, "indextts_trt.containers": json.dumps(containers),
            "indextts_trt.values": json.dumps(values)}
    return tensors, meta


def unflatten_nested(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str] | None, source: str) -> object:
    """Inverse of :func:`flatten_nested`; a plain safetensors file (no nesting metadata) stays flat."""
    meta = meta or {}
    if meta.get("indextts_trt.nesting") is None:
        return dict(tensors)
    if meta["indextts_trt.nesting"] != NESTING:
        raise CheckpointError(f"{source}: unknown nesting format {meta['indextts_trt.nesting']!r} (expected {NESTING})")
    try:
        containers = json.loads(meta["indextts_trt.containers"])
        leaves = {**json.loads(meta["indextts_trt.values"]), **tensors}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{source}: damaged nesting metadata: {e}") from None
    if "" not in containers:  # a bare tensor or value
        return leaves.get("")
    built: dict[str, object] = {p: {} for p in containers}
    children: dict[str, list[tuple[str, object]]] = {p: [] for p in containers}
    for path, value in leaves.items():
        parent, _, key = path.rpartition("/")
        if parent not in children:
            raise CheckpointError(f"{source}: entry '{path}' has no container '{parent}'")
        children[parent].append((key, value))
    for path in sorted(containers, key=lambda p: -p.count("/") - (p != "")):  # deepest first
        items = children[path] + [(c.rpartition("/")[2], built[c]) for c in containers
                                  if c and c.rpartition("/")[0] == path]
        kind = containers[path]
        if kind == "dict":
            built[path] = dict(items)
        else:
            seq = [v for _, v in sorted(items, key=lambda kv: int(kv[0]))]
            built[path] = seq if kind == "list" else tuple(seq)
    return built[""]


def save_nested_safetensors(obj: object, path: str | Path, source: str, metadata: Mapping[str, str] = ()) -> None:
    """Write ``obj`` (a loaded pickle) to ``path`` in the nested-v1 layout, atomically."""
    from safetensors.torch import save_file

    tensors, meta = flatten_nested(obj, source)
    seen: set[int] = set()
    flat = {}
    for k, t in tensors.items():  # safetensors refuses shared storage (tied weights); copy those
        ptr = t.untyped_storage().data_ptr()
        flat[k] = t.clone().contiguous() if ptr in seen and t.numel() else t.contiguous()
        seen.add(ptr)
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata={**meta, **dict(metadata)}))


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt: {e}") from None


def load_pickled(path: str | Path, what: str = "checkpoint") -> tuple[object, Path]:
    """What a released pickle holds, read from its safetensors twin when there is one.

    Every loader of a pickled file calls this, so the preference is written once. Returns the
    object and the file actually read, for error messages.
    """
    path = Path(path)
    twin = converted_path(path)
    if twin != path and twin.is_file():
        return unflatten_nested(safetensors_load(twin, what), safetensors_metadata(twin), str(twin)), twin
    return torch_load(path, what), path


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
