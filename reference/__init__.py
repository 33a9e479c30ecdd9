"""The PyTorch reference: every stage's model as upstream computes it, and one end-to-end pipeline
per model variant (``open_reference_pipeline`` picks it from the checkpoint's config)."""

from __future__ import annotations

import importlib
from pathlib import Path

# model variant -> its reference pipeline class
PIPELINES = {"indextts-2": "indextts_trt.reference.pipeline:ReferencePipeline",
             "indextts-2.5": "indextts_trt.reference.v25.pipeline:ReferencePipelineV25"}


def open_reference_pipeline(checkpoints: str | Path):
    from indextts_trt.runtime.config import read_yaml
    from indextts_trt.runtime.variant import VariantError, detect_variant

    root = Path(checkpoints)
    variant = detect_variant(read_yaml(root), str(root / "config.yaml"))
    if variant.name not in PIPELINES:
        raise VariantError(f"model variant {variant.name} has no PyTorch reference pipeline")
    module, _, cls = PIPELINES[variant.name].partition(":")
    return getattr(importlib.import_module(module), cls)(root)


__all__ = ["open_reference_pipeline", "PIPELINES"]
