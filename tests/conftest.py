"""Shared fixtures: tiny synthetic EM data and a tiny trained model folder."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from napari_unet.engine.config import Config  # noqa: E402
from napari_unet.engine.synthetic import synthetic_em  # noqa: E402


def tiny_config(tmp_path, **train) -> Config:
    """A config that trains a depth-2, 4-filter U-Net for a few steps."""
    settings = {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "patch_size": 32,
                "precision": "float32", "tensorboard": False, "val_em_metrics": True}
    settings.update(train)
    return Config.model_validate(
        {
            "model": {"depth": 2, "base_filters": 4},
            "train": settings,
            "predict": {"tile_size": 64, "overlap": 8, "batch_size": 2},
            "data": {"val_fraction": 0.34},
            "output": str(tmp_path / "model"),
        }
    )


@pytest.fixture
def em_stack() -> tuple[np.ndarray, np.ndarray]:
    """Three 48x48 EM-like slices (uint8) and their {0,1} masks."""
    return synthetic_em(slices=3, size=48, cells=8, seed=1)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """A tiny model folder trained once per test session."""
    from napari_unet.engine.train import train

    tmp = tmp_path_factory.mktemp("trained")
    images, masks = synthetic_em(slices=3, size=48, cells=8, seed=2)
    result = train(tiny_config(tmp), images, masks)
    return result.model_dir
