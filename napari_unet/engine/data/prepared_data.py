"""The container of prepared training data, whichever way it was prepared.

:func:`~napari_unet.engine.data.prepare.prepare_data` fills it with in-memory
arrays, :mod:`~napari_unet.engine.data.lazy_sources` with a patch source read on
demand and :mod:`~napari_unet.engine.data.patch_cache` from its on-disk cache.
It has a module of its own (importing nothing of the engine) so that those
modules can build it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PreparedData"]


@dataclass
class PreparedData:
    """Normalized float32 images (``(Z, Y, X)``, or ``(Z, Y, X, C)`` with channels),
    targets (binary {0, 1}, class indices or float32 for regression) and pixel weights."""

    train_images: np.ndarray
    train_masks: np.ndarray
    train_weights: np.ndarray
    val_images: np.ndarray | None
    val_masks: np.ndarray | None
    val_weights: np.ndarray | None
    description: dict[str, Any] = field(default_factory=dict)
    #: Slices held out by ``data.split.test``: scored after training, never trained on.
    test_images: np.ndarray | None = None
    test_masks: np.ndarray | None = None
    test_weights: np.ndarray | None = None
