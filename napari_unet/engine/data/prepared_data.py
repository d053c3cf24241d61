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
    """Normalized float32 images, {0,1} targets and per-pixel weights."""

    train_images: np.ndarray
    train_masks: np.ndarray
    train_weights: np.ndarray
    val_images: np.ndarray | None
    val_masks: np.ndarray | None
    val_weights: np.ndarray | None
    description: dict[str, Any] = field(default_factory=dict)
