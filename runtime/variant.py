"""Model variants: one object per model family, and the registry that finds it (torch-free).

A :class:`ModelVariant` owns everything about one family that the generic code must not know:
how its ``config.yaml`` reads, its checkpoint layout, its stage specs and their order, the files
its engines directory carries besides the graphs, and the pipeline class that sequences its
stages. The build, the parity gate, the manifest and the runtime only call this interface, so a
new family is a new variant (and its export half, ``export/variant.py``), not a set of branches.

The variant is chosen from the checkpoint's ``config.yaml`` (:func:`detect_variant`) and recorded
in the engines directory's manifest, which the runtime reads back (:func:`get_variant`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .config import ConfigError, read_yaml
from .spec import StageSpec


class VariantError(ConfigError):
    """No known model variant reads this config, or a variant name is unknown."""


class ModelVariant:
    """The torch-free half of a model family. Subclass and override; see ``indextts2``."""

    name: str = ""
    description: str = ""
    config_versions: tuple[str, ...] = ()  # the config.yaml ``version`` values this variant reads
    host_files: tuple[str, ...] = ()  # files besides the graphs the runtime reads from an engines dir
    pipeline: str = ""  # "module:Class" of the pipeline that sequences the stages (imported lazily)
    options_class: type | None = None  # its request options (a RunOptions subclass); None: RunOptions
    codes_per_second: float = 0.0  # the GPT's codes per second of speech (0: not a code model)

    def matches(self, data: dict) -> bool:
        return str(data.get("version")) in self.config_versions

    def parse_config(self, data: dict, src: str) -> tuple[Any, list[str]]:
        raise NotImplementedError

    def config_dict(self, size: str) -> dict:
        """The config of random-weight checkpoints: 'full' (the released one) or 'tiny' (tests)."""
        raise NotImplementedError

    def layout(self, root: str | Path):
        """The checkpoint directory layout: ``required_files(cfg)`` and ``check()``."""
        raise NotImplementedError

    def stage_specs(self, cfg) -> dict[str, StageSpec]:
        """Every stage's spec, in pipeline order."""
        raise NotImplementedError

    def load_config(self, path: str | Path):
        import logging

        path = Path(path)
        src = str(path / "config.yaml" if path.is_dir() else path)
        cfg, warnings = self.parse_config(read_yaml(path), src)
        for w in warnings:
            logging.getLogger(__name__).warning(w)
        return cfg

    def request_options(self, options):
        """``options`` as this variant's options class: a plain ``RunOptions`` (or another class
        with a subset of the fields) takes this variant's defaults for the rest; a field this
        variant does not have (e.g. ``language`` on IndexTTS-2) is an OptionError naming it.
        The result is validated (its own rules; the request's are ``check_request``)."""
        import dataclasses

        from .errors import OptionError
        from .options import RunOptions

        cls = self.options_class or RunOptions
        if not isinstance(options, RunOptions):
            raise OptionError("options", options, "must be a RunOptions")
        if type(options) is not cls:
            own = {f.name for f in dataclasses.fields(cls)}
            extra = [f.name for f in dataclasses.fields(options) if f.name not in own]
            if extra:
                others = [v.name for v in _all().values() if extra[0] in
                          {f.name for f in dataclasses.fields(v.options_class or RunOptions)}]
                raise OptionError(extra[0], getattr(options, extra[0]),
                                  f"model variant {self.name} has no such option"
                                  + (f" (it is one of {', '.join(others)})" if others else ""))
            options = cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(options)})
        return options.validated()

    def pipeline_class(self) -> type:
        module, _, cls = self.pipeline.partition(":")
        return getattr(importlib.import_module(module), cls)

    def __repr__(self) -> str:
        return f"<model variant {self.name}>"


# Built-in variants, imported on first use so importing the registry stays cheap.
_BUILTIN = {"indextts-2": "indextts_trt.runtime.indextts2:VARIANT",
            "indextts-2.5": "indextts_trt.runtime.indextts25:VARIANT"}
_REGISTRY: dict[str, ModelVariant] = {}


def register_variant(variant: ModelVariant) -> ModelVariant:
    """Make ``variant`` findable by name and by config (tests register their own)."""
    if not variant.name:
        raise ValueError("a model variant needs a name")
    _REGISTRY[variant.name] = variant
    return variant


def unregister_variant(name: str) -> None:
    _REGISTRY.pop(name, None)


def _all() -> dict[str, ModelVariant]:
    for name, target in _BUILTIN.items():
        if name not in _REGISTRY:
            module, _, attr = target.partition(":")
            _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return _REGISTRY


def _known() -> str:
    return ", ".join(f"{v.name} (version {'/'.join(v.config_versions)})" for v in _all().values())


def get_variant(name: str) -> ModelVariant:
    try:
        return _all()[name]
    except KeyError:
        raise VariantError(f"unknown model variant {name!r}; known: {_known()}") from None


def detect_variant(data: dict, src: str = "<config>") -> ModelVariant:
    """The one variant whose config this is (by its ``version`` field)."""
    found = [v for v in _all().values() if v.matches(data)]
    if len(found) != 1:
        what = f"version {data.get('version')!r}" if "version" in data else "no 'version' field"
        raise VariantError(f"{src}: {what} matches {'no' if not found else 'more than one'} known model variant; "
                           f"known: {_known()}")
    return found[0]


def load_variant_config(path: str | Path) -> tuple[ModelVariant, Any]:
    """``config.yaml`` (or its directory) → (its variant, the parsed config)."""
    path = Path(path)
    variant = detect_variant(read_yaml(path), str(path / "config.yaml" if path.is_dir() else path))
    return variant, variant.load_config(path)


__all__ = ["ModelVariant", "VariantError", "register_variant", "unregister_variant", "get_variant", "detect_variant",
           "load_variant_config"]
