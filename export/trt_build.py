"""The thin TensorRT layer of ``tts-export build``: applies a build plan (``trt_plan.py``).

Everything here needs ``import tensorrt`` and an NVIDIA GPU; none of it has run in this project's
CI or development machines (TensorRT cannot be installed there). The decisions it applies
(profiles, precision, islands, workspace, cache keys) are plain code tested on CPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from indextts_trt.runtime.files import sha256_file, write_bytes_atomic
from indextts_trt.runtime.gpu import TensorRTUnavailable, gpu_info, import_tensorrt

from .trt_plan import StagePlan


def _layer_matches(layer_name: str, nodes: set[str]) -> bool:
    # the ONNX parser names a layer after its node, sometimes with a suffix for helper layers
    return layer_name in nodes or layer_name.split(" ")[0] in nodes or layer_name.rsplit("_", 1)[0] in nodes


def build_engine(trt, plan: StagePlan, engine_dir: Path, timing_cache: bytes | None, log) -> tuple[bytes, bytes]:
    """Parse, configure, build. Returns (serialized engine, updated timing cache)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(engine_dir / plan.onnx)):  # resolves external data next to the file
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"stage {plan.stage}: TensorRT could not parse {plan.onnx}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = plan.builder_optimization_level
    if plan.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif plan.precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    if plan.fp32_nodes:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        nodes, floats, pinned = set(plan.fp32_nodes), (trt.float32, trt.float16, trt.bfloat16), 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if not _layer_matches(layer.name, nodes):
                continue
            outs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
            if not outs:
                continue
            layer.precision = trt.float32
            for j in outs:
                layer.set_output_type(j, trt.float32)
            pinned += 1
        log(f"{plan.stage}: {pinned} layers pinned to fp32 ({len(nodes)} ONNX nodes in the islands)")
    for p in plan.profiles:
        prof = builder.create_optimization_profile()
        for name, s in p.shapes.items():
            prof.set_shape(name, s["min"], s["opt"], s["max"])
        config.add_optimization_profile(prof)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"stage {plan.stage}: TensorRT failed to build the engine (see the log above)")
    return bytes(blob), bytes(config.get_timing_cache().serialize())


def build_engines(engine_dir: str | Path, plan: dict, manifest: dict, stages: list[str] | None = None,
                  force: bool = False, log=print) -> list[str]:
    """Build every planned engine whose cache key changed; record TensorRT version, GPU and key in
    the manifest. The timing cache is shared across stages and processes under a file lock."""
    from filelock import FileLock

    trt = import_tensorrt()
    gpu, cc = gpu_info()
    engine_dir = Path(engine_dir)
    cache_path = engine_dir / plan["timing_cache"]
    built = []
    for name, entry in plan["stages"].items():
        if stages and name not in stages:
            continue
        sp = StagePlan.from_json(entry)
        key = sp.cache_key(trt.__version__, cc)
        st = manifest["stages"][name]
        old = st.get("trt") or {}
        if not force and old.get("cache_key") == key and (engine_dir / sp.engine).is_file() and \
                sha256_file(engine_dir / sp.engine) == old.get("sha256"):
            continue
        with FileLock(str(cache_path) + ".lock"):
            timing = cache_path.read_bytes() if cache_path.is_file() else None
            blob, timing = build_engine(trt, sp, engine_dir, timing, log)
            write_bytes_atomic(cache_path, timing)
        write_bytes_atomic(engine_dir / sp.engine, blob)
        st["trt"] = {"stage": name, "engine": sp.engine, "sha256": hashlib.sha256(blob).hexdigest(),
                     "cache_key": key, "version": trt.__version__, "gpu": gpu, "compute_capability": cc,
                     "precision": sp.precision, "profiles": [p.name for p in sp.profiles]}
        built.append(name)
    return built


__all__ = ["TensorRTUnavailable", "import_tensorrt", "gpu_info", "build_engines", "build_engine"]
