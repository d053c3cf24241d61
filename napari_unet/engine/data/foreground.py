"""Foreground masking of the loss with Otsu thresholds (numpy/scikit-image only).

With ``data.foreground.mode``:

* ``off``: weights unchanged;
* ``restrict``: pixel weight 0 outside the foreground (the loss ignores them);
* ``weight``: pixel weight multiplied by ``data.foreground.weight`` outside.

The foreground is ``image > otsu_threshold`` of the normalized image, one
threshold per slice (``per_slice``) or for the whole stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["apply_foreground", "otsu_foreground"]


def _otsu(values: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.ones(values.shape, dtype=bool)  # nothing to separate: all foreground
    return values > threshold_otsu(finite)


def otsu_foreground(stack: np.ndarray, per_slice: bool = True) -> np.ndarray:
    """Bool ``(Z, Y, X)`` foreground: pixels brighter than the Otsu threshold.

    A constant slice (or stack) is all foreground.
    """
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    if not per_slice:
        return _otsu(stack)
    return np.stack([_otsu(plane) for plane in stack])


def apply_foreground(weights: np.ndarray, images: np.ndarray, config: Any) -> np.ndarray:
    """Weights after foreground masking as configured.

    Parameters
    ----------
    weights
        float32 ``(Z, Y, X)`` pixel weights (0 = ignored).
    images
        The normalized images of the same shape.
    config
        :class:`~napari_unet.engine.config.ForegroundConfig`.

    Returns
    -------
    numpy.ndarray
        float32 weights; `weights` itself when the mode is ``off``.
    """
    if config.mode == "off":
        return weights
    foreground = otsu_foreground(images, config.per_slice)
    outside = 0.0 if config.mode == "restrict" else float(config.weight)
    return (weights * np.where(foreground, 1.0, outside)).astype(np.float32)
