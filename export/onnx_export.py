"""Trace one stage to ONNX with the dynamo exporter, everything derived from its StageSpec.

Facts of torch 2.13 this relies on (FACTS.md): an example size of 1 on a dynamic dim is silently
specialized, so example inputs use at least 2 on every dynamic dim; opset 20 (17 is down-converted
into a graph ONNX Runtime rejects); graphs under 2 GB are written as a single file
(``external_data=False``), larger ones with one ``.onnx.data`` file beside them.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from indextts_trt.runtime.spec import StageSpec

log = logging.getLogger(__name__)


class _NoTorchvisionNotice(logging.Filter):
    """torch.onnx's op registry logs "torchvision is not installed. Skipping torchvision::nms" (and
    three more ops) at every export: 48 warning lines a build, through its progress bar. No stage
    uses torchvision, so that one message is dropped at the logger that emits it; every other
    message of the exporter passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("torchvision is not installed")


# set once, where the exporter is imported: every export (build, tests, tools) is quiet about it
logging.getLogger("torch.onnx._internal.exporter._registration").addFilter(_NoTorchvisionNotice())

OPSET = 20
TWO_GB = 2 * 1024**3


def export_sizes(spec: StageSpec) -> dict[str, int]:
    """The example shape: opt, lifted to at least 2 on every dynamic dim (and kept in range)."""
    free = {d.name: min(max(d.opt, 2), d.max) for d in spec.free_dims}
    return spec.resolve(free)


def dynamic_shapes(spec: StageSpec, module: nn.Module | None = None) -> tuple:
    """Each input's dynamic axes, in ``module.forward``'s argument order (the spec's input order):
    inputs past its named parameters go to its ``*args`` as one tuple (the decode step's cache
    parts), as torch.export matches them."""
    dims = {d.name: torch.export.Dim(d.name, min=max(d.min, 1), max=d.max) for d in spec.free_dims}
    axes = tuple({i: dims[a] for i, a in enumerate(t.shape) if isinstance(a, str) and a in dims} or None
                 for t in spec.inputs)
    params = inspect.signature(module.forward).parameters.values() if module is not None else ()
    if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return axes
    n = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
    return (*axes[:n], axes[n:])


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if x == old else x for x in node.input]
        node.output[:] = [new if x == old else x for x in node.output]
        for attr in node.attribute:  # sub-graphs (If/Loop) refer to outer values by name
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_value(attr.g, old, new)
    for coll in (graph.input, graph.output, graph.value_info):
        for v in coll:
            if v.name == old:
                v.name = new


def name_io(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> None:
    """Give graph inputs/outputs the spec's names. Done after export because the exporter names
    intermediate values after their ops, and an output called e.g. ``embedding`` then collides
    with an internal value of that name ("Duplicate definition of name")."""
    g = model.graph
    if len(g.input) != len(inputs) or len(g.output) != len(outputs):
        raise RuntimeError(f"exported graph has {len(g.input)} inputs / {len(g.output)} outputs, "
                           f"the spec {len(inputs)} / {len(outputs)}")
    io = list(zip(g.input, inputs)) + list(zip(g.output, outputs))
    taken = {x for n in g.node for x in list(n.input) + list(n.output)} | {i.name for i in g.initializer}
    for value, target in io:
        if value.name != target and target in taken:
            _rename_value(g, target, f"{target}__internal")
            for init in g.initializer:
                if init.name == target:
                    init.name = f"{target}__internal"
    for value, target in io:
        if value.name != target:
            _rename_value(g, value.name, target)


def export_stage(module: nn.Module, spec: StageSpec, feed: dict[str, np.ndarray], out_path: Path,
                 metadata: dict[str, str]) -> Path:
    """Export ``module`` (an adapter) to ``out_path`` and stamp ``metadata`` into the graph."""
    args = tuple(torch.from_numpy(np.ascontiguousarray(feed[t.name])) for t in spec.inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            module, args, str(out_path), dynamic_shapes=dynamic_shapes(spec, module), dynamo=True,
            opset_version=OPSET, external_data=True, optimize=True, verbose=False, report=False,
        )
    del prog
    # An adapter may wrap a large model of which the graph uses a part (the conditioning stages
    # wrap all of UnifiedVoice), so the size is known only now: one file under 2 GB (protobuf's
    # limit), a single ``.onnx.data`` file beside it above.
    model = onnx.load(str(out_path), load_external_data=True)
    name_io(model, [t.name for t in spec.inputs], [t.name for t in spec.outputs])
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    data = out_path.with_name(out_path.name + ".data")
    data.unlink(missing_ok=True)
    size = sum(init.ByteSize() for init in model.graph.initializer)
    if size < TWO_GB * 0.95:
        onnx.save(model, str(out_path))
    else:
        onnx.save(model, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=data.name, size_threshold=1024)
    return out_path
