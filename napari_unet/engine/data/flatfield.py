"""Flat-field correction estimated from the data itself (numpy/scipy only).

Uneven illumination is a smooth multiplicative field. It is estimated as the
mean image of the stack blurred with a Gaussian of ``sigma = fraction x
min(height, width)`` (heavy enough to wipe out every structure; the borders are
point-reflected so that the field keeps its slope up to the edges), normalized to
mean 1, and divided out of each slice. Training estimates it on the training
stack; prediction estimates it on the stack being predicted.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["correct_flat_field", "estimate_flat_field"]

# The field never drops below this fraction of its mean (no division blow-ups).
_FLOOR = 0.05


def estimate_flat_field(stack: np.ndarray, sigma_fraction: float = 0.125) -> np.ndarray:
    """Estimate the illumination field of a ``(Z, Y, X)`` stack.

    Parameters
    ----------
    stack
        Raw images (any real dtype); NaNs are ignored.
    sigma_fraction
        Gaussian sigma as a fraction of the smaller image side.

    Returns
    -------
    numpy.ndarray
        float32 ``(Y, X)`` field with mean 1, at least 0.05 everywhere; all ones
        when the images have no positive mean (nothing to correct).
    """
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    mean = np.nanmean(stack.astype(np.float64), axis=0)
    mean = np.nan_to_num(mean, nan=0.0, posinf=0.0, neginf=0.0)
    level = float(mean.mean())
    if not np.isfinite(level) or level <= 0:
        return np.ones(mean.shape, dtype=np.float32)
    sigma = max(1.0, sigma_fraction * min(mean.shape))
    # odd (point) reflection at the borders continues linear trends, so the
    # blurred field does not flatten out towards the image edges
    pad = math.ceil(3 * sigma)
    padded = np.pad(mean, pad, mode="reflect", reflect_type="odd")
    field = ndimage.gaussian_filter(padded, sigma, mode="nearest")[pad:-pad, pad:-pad]
    field = np.maximum(field, _FLOOR * level)
    return (field / field.mean()).astype(np.float32)


def correct_flat_field(
    stack: np.ndarray, field: np.ndarray | None = None, sigma_fraction: float = 0.125
) -> np.ndarray:
    """Divide `field` out of every slice of `stack`.

    The field is estimated from `stack` itself when `field` is None or has
    another slice shape (e.g. validation images of another size).

    Returns
    -------
    numpy.ndarray
        float32 stack of the input's shape.
    """
    stack = np.asarray(stack)
    if field is None or field.shape != stack.shape[-2:]:
        field = estimate_flat_field(stack, sigma_fraction)
    return (stack.astype(np.float32) / field).astype(np.float32)
