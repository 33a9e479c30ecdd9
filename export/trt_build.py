"""The thin TensorRT layer of ``tts-export build``: applies a build plan (``trt_plan.py``).

Correct on TensorRT 10.x and 11.x (``tests/test_trt_api.py`` checks every name used here against
both versions' bindings): the network is strongly typed, so each layer runs in the precision the
ONNX graph's types say (fp16 graphs with fp32 islands come from ``mixed_precision.convert``); no
precision builder flag and no per-layer precision exist in 11.x and none is used. TF32 is cleared
unless the plan asks for it (both versions enable it by default, and the fp32 tolerances assume
real fp32).

Everything that touches ``tensorrt`` needs an NVIDIA GPU and has never run on this project's
machines (TensorRT cannot be installed there); the plan it applies is plain, tested code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from indextts_trt.runtime.files import sha256_file, write_bytes_atomic
from indextts_trt.runtime.gpu import TensorRTUnavailable, gpu_info, import_tensorrt  # noqa: F401 - re-exported

from .trt_plan import StagePlan

# How long another build may hold the timing-cache lock (it holds it only to read, merge and write).
CACHE_LOCK_TIMEOUT_S = 120


class EngineBuildError(RuntimeError):
    """A stage's engine could not be built; the message names the stage and TensorRT's errors."""


def _major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _logger(trt):
    """A logger that prints warnings and keeps the errors, so a failure can quote them."""

    class _Log(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR,
                            trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {msg}", flush=True)

    return _Log()


def _network(trt, builder):
    """A strongly typed network: the flag on 10.x; on 11.x every network is, and the flag is
    deprecated (and has another bit), so none is passed."""
    if _major(trt) >= 11:
        return builder.create_network(0)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    if network is not None and not network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED):
        return None
    return network


@dataclass
class Built:
    engine: bytes
    config: object  # the IBuilderConfig: holds the build's timing cache
    cache: object  # the ITimingCache attached to it, kept referenced until it is saved


def build_engine(trt, plan: StagePlan, engine_dir: Path, timing_cache: bytes | None, log) -> Built:
    """Parse, configure, build. Raises EngineBuildError naming the stage and TensorRT's messages."""
    logger = _logger(trt)

    def fail(what: str):
        errs = "; ".join(logger.errors[-5:])
        raise EngineBuildError(f"stage {plan.stage}: {what}" + (f" (TensorRT: {errs})" if errs else ""))

    builder = trt.Builder(logger)
    if not builder:
        fail("TensorRT could not create a builder (no usable GPU?)")
    network = _network(trt, builder)
    if network is None:
        fail("TensorRT could not create a strongly typed network")
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external data (weights > 2 GB) next to the graph
    if not parser.parse_from_file(str(engine_dir / plan.graph)):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        fail(f"TensorRT could not parse {plan.graph}: {'; '.join(errs) or 'no parser error recorded'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = plan.builder_optimization_level
    if plan.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default in 10.x and 11.x
    for i, p in enumerate(plan.profiles):
        prof = builder.create_optimization_profile()
        for name, s in p.shapes.items():
            prof.set_shape(name, s["min"], s["opt"], s["max"])
        if not prof:
            fail(f"optimization profile {p.name} is invalid")
        idx = config.add_optimization_profile(prof)
        if idx != i:  # -1 on an invalid profile; the runtime selects profiles by this index
            fail(f"optimization profile {p.name} was added as index {idx}, expected {i}")
    # a cache from another GPU or TensorRT version still seeds the build; mismatching entries are skipped
    cache = config.create_timing_cache(timing_cache or b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=True):
        log(f"{plan.stage}: the timing cache could not be used; building without its entries")
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=True):
            fail("TensorRT could not attach an empty timing cache")
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        fail("TensorRT failed to build the engine")
    return Built(bytes(blob), config, cache)


def save_timing_cache(config, cache_path: Path, log) -> None:
    """Merge the on-disk cache (other builds may have written it since this one loaded it) into
    the cache this build produced and write it back, under a short file lock (Polygraphy's
    pattern). A cache TensorRT cannot return or serialize is skipped with a note: it never costs
    the engine, which is already written."""
    from filelock import FileLock, Timeout

    built_cache = config.get_timing_cache()
    if built_cache is None:
        log(f"timing cache: TensorRT returned none after the build; {cache_path.name} is unchanged")
        return
    try:
        with FileLock(str(cache_path) + ".lock", timeout=CACHE_LOCK_TIMEOUT_S):
            if cache_path.is_file():
                old = config.create_timing_cache(cache_path.read_bytes())
                if old is not None and not built_cache.combine(old, ignore_mismatch=True):
                    log(f"timing cache: could not merge {cache_path.name} into this build's; replacing it")
            data = built_cache.serialize()
            if data is None:
                log(f"timing cache: TensorRT could not serialize it; {cache_path.name} is unchanged")
                return
            write_bytes_atomic(cache_path, bytes(data))
    except Timeout:
        log(f"timing cache: {cache_path}.lock held for over {CACHE_LOCK_TIMEOUT_S} s; not saved this time")


def build_engines(engine_dir: str | Path, plan: dict, manifest: dict, stages: list[str] | None = None,
                  force: bool = False, log=print) -> list[str]:
    """Build every planned engine whose cache key changed; record TensorRT version, GPU and key in
    the manifest. An engine is written (atomically) only once built; a failure leaves the old one
    and its manifest record untouched and raises EngineBuildError."""
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
        if sha256_file(engine_dir / sp.graph) != sp.graph_sha256:
            raise EngineBuildError(f"stage {name}: {sp.graph} changed since the plan was made; rerun the plan")
        timing = cache_path.read_bytes() if cache_path.is_file() else None
        try:
            b = build_engine(trt, sp, engine_dir, timing, log)
        except EngineBuildError:
            raise
        except Exception as e:  # noqa: BLE001 - TensorRT raises TypeError/RuntimeError/...; name the stage
            raise EngineBuildError(f"stage {name}: {type(e).__name__}: {e}") from None
        write_bytes_atomic(engine_dir / sp.engine, b.engine)
        save_timing_cache(b.config, cache_path, log)
        st["trt"] = {"stage": name, "engine": sp.engine, "sha256": hashlib.sha256(b.engine).hexdigest(),
                     "cache_key": key, "version": trt.__version__, "gpu": gpu, "compute_capability": cc,
                     "precision": sp.graph_precision, "graph": sp.graph, "tf32": sp.tf32,
                     "profiles": [p.name for p in sp.profiles]}
        built.append(name)
        log(f"  engine  {name:<22s} {sp.engine} (from {sp.graph})")
    return built


__all__ = ["Built", "TensorRTUnavailable", "EngineBuildError", "import_tensorrt", "gpu_info", "build_engines", "build_engine",
           "save_timing_cache"]
