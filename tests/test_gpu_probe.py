"""The one GPU probe (runtime/gpu.py): cuda-python first, nvidia-smi without it. Host-logic tests
with stand-ins (an nvidia-smi script, a cuda.bindings.runtime module): no evidence a GPU works."""

from __future__ import annotations

import os
import types

import pytest

from indextts_trt.runtime import gpu


def _fake_cudart(err=0, count=1):
    class Err(int):
        @property
        def name(self):
            return {0: "cudaSuccess", 35: "cudaErrorInsufficientDriver"}[int(self)]

    m = types.SimpleNamespace()
    m.cudaError_t = types.SimpleNamespace(cudaSuccess=Err(0))
    m.cudaGetDeviceCount = lambda: (Err(err), count)
    prop = types.SimpleNamespace(name=b"NVIDIA H200\0\0junk", major=9, minor=0, totalGlobalMem=141 * 2**30)
    m.cudaGetDeviceProperties = lambda i: (Err(0), prop)
    return m


def test_cuda_python_answers_when_installed(monkeypatch):
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: _fake_cudart())
    g = gpu.probe()
    assert (g.name, g.compute_capability, g.memory_bytes, g.source) == ("NVIDIA H200", "9.0", 141 * 2**30, "cuda-python")
    assert gpu.describe() == "NVIDIA H200 (sm_90, 141 GiB, via cuda-python)"
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: _fake_cudart(err=35))
    with pytest.raises(gpu.NoGpu, match="cudaGetDeviceCount returned cudaErrorInsufficientDriver"):
        gpu.probe()
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: _fake_cudart(count=0))
    with pytest.raises(gpu.NoGpu, match="cuda-python sees 0"):
        gpu.probe()


def test_nvidia_smi_answers_without_cuda_python(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: None)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 9.0, 81559'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    g = gpu.probe()
    assert (g.name, g.compute_capability, g.memory_bytes, g.source) == ("NVIDIA H100 80GB HBM3", "9.0", 81559 * 2**20,
                                                                         "nvidia-smi")
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\n"
                   "exit 9\n")
    with pytest.raises(gpu.NoGpu, match="could not communicate"):
        gpu.probe()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(gpu.NoGpu, match="nvidia-smi is not on PATH"):
        gpu.probe()


def test_the_builder_and_env_use_the_same_probe(monkeypatch):
    from indextts_trt.export import environment, trt_build

    monkeypatch.setattr(gpu, "cuda_runtime", lambda: _fake_cudart())
    assert trt_build.gpu_info() == ("NVIDIA H200", "9.0")
    assert environment.collect_env()["gpu"] == "NVIDIA H200 (sm_90, 141 GiB, via cuda-python)"
    monkeypatch.setattr(gpu, "cuda_runtime", lambda: _fake_cudart(err=35))
    with pytest.raises(trt_build.TensorRTUnavailable, match="cudaErrorInsufficientDriver"):
        trt_build.gpu_info()


def test_real_cuda_python_without_a_driver_is_no_gpu():
    pytest.importorskip("cuda.bindings.runtime")
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("a GPU is present")
    with pytest.raises(gpu.NoGpu, match="cudaErrorInsufficientDriver|cudaErrorNoDevice"):
        gpu.probe()


def test_runtime_gpu_is_torch_free():
    import ast
    from pathlib import Path

    src = Path(gpu.__file__).read_text()
    imported = {a.name.split(".")[0] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"torch", "indextts_trt"}, imported
