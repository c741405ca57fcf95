"""Shared fixtures: a tiny real stream (scikit-learn digits) and a small model."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per xdist worker: two workers on two cores must not oversubscribe.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_stream():
    """Split Digits: 5 class-incremental experiences of 2 classes (real data, tiny)."""
    from lifelong.data import build_stream, resolve_root

    return build_stream("digits", "class_incremental", 5, root=resolve_root(None), seed=0)


@pytest.fixture
def tiny_model(digits_stream):
    from lifelong.models import build_model

    info = digits_stream.info
    return build_model(
        "mlp", "linear", num_classes=info.num_classes, input_shape=info.input_shape, backbone_kwargs={"hidden": [32]}
    )
