"""Shared fixtures. Tests use the tiny random-weight configuration; nothing is downloaded."""

from __future__ import annotations

import os

import pytest

# Two cores in CI: keep torch/ORT from oversubscribing when tests run.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_cfg():
    from indextts_trt.runtime.config import tiny_config

    return tiny_config()


@pytest.fixture(scope="session")
def full_cfg():
    from indextts_trt.runtime.config import full_config

    return full_config()
