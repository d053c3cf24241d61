"""U-Net paper pixel weights (numpy/scipy only, no TensorFlow).

Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for
Biomedical Image Segmentation", eq. (2)::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

``d1`` and ``d2`` are the distances to the nearest and the second-nearest
object (4-connected component of the mask's foreground). The border term makes
the network pay attention to the thin background gaps between touching objects
(for ISBI 2012: the membranes between cells).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import UserInputError

__all__ = ["MAX_CLASS_RATIO", "border_weights", "border_weights_stack", "class_balance_weights"]

#: Cap on the minority/majority class weight ratio of :func:`class_balance_weights`.
MAX_CLASS_RATIO = 10.0

#: The border term is dropped where it is below ``w0 * _BORDER_TOLERANCE``: only
#: pixels with ``d1 + d2 < sigma * sqrt(2 ln(1 / _BORDER_TOLERANCE))`` (~4.3 sigma)
#: get it, which bounds the neighbourhood searched around every object.
_BORDER_TOLERANCE = 1e-4

_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def class_balance_weights(mask01: np.ndarray) -> np.ndarray:
    """Class-frequency balancing weights ``w_c``, mean 1 over the image.

    The rarer class gets ``ratio = min(freq_major / freq_minor, MAX_CLASS_RATIO)``
    times the weight of the more frequent class; both are then scaled so that
    the mean of ``w_c`` over the image is exactly 1 (uncapped, this is the usual
    inverse-frequency weighting ``1 / (2 freq_k)``). An image with one class only
    gets 1 everywhere.

    Parameters
    ----------
    mask01
        Binary mask (nonzero = foreground), any shape.

    Returns
    -------
    numpy.ndarray
        float32 weights of the mask's shape.
    """
    fg = np.asarray(mask01) != 0
    n = fg.size
    n_fg = int(np.count_nonzero(fg))
    n_bg = n - n_fg
    if n_fg == 0 or n_bg == 0:
        return np.ones(fg.shape, np.float32)
    ratio = min(max(n_fg, n_bg) / min(n_fg, n_bg), MAX_CLASS_RATIO)
    w_fg, w_bg = (1.0, ratio) if n_fg >= n_bg else (ratio, 1.0)
    scale = n / (w_fg * n_fg + w_bg * n_bg)
    return np.where(fg, np.float32(w_fg * scale), np.float32(w_bg * scale)).astype(np.float32)


def _two_nearest_object_distances(fg: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1 <= d2`` to the nearest and second-nearest 4-connected object.

    Exact wherever ``d2 <= cutoff``; elsewhere ``d2`` (and possibly ``d1``) is
    ``inf``. Every object's distance transform is computed only inside its
    bounding box grown by ``cutoff``, which holds every pixel within ``cutoff``
    of the object, so the cost grows with the number and size of objects rather
    than with ``objects x image``.
    """
    labels, n = ndimage.label(fg, structure=_FOUR_CONNECTED)
    d1 = np.full(fg.shape, np.inf, np.float32)
    d2 = np.full(fg.shape, np.inf, np.float32)
    if n < 2:
        return d1, d2
    margin = math.ceil(cutoff)
    height, width = fg.shape
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        y0 = max(box[0].start - margin, 0)
        y1 = min(box[0].stop + margin, height)
        x0 = max(box[1].start - margin, 0)
        x1 = min(box[1].stop + margin, width)
        window = (slice(y0, y1), slice(x0, x1))
        dist = ndimage.distance_transform_edt(labels[window] != index).astype(np.float32)
        b1 = d1[window]
        b2 = d2[window]
        # Insert ``dist`` into the sorted pair (b1, b2), in place.
        np.minimum(b2, np.maximum(b1, dist), out=b2)
        np.minimum(b1, dist, out=b1)
    return d1, d2


def border_weights(
    mask01_2d: np.ndarray, w0: float = 10.0, sigma: float = 5.0, balance: bool = True
) -> np.ndarray:
    """U-Net weight map of one 2D mask.

    ``w = w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` where the border term is
    applied on background pixels only (as in Fig. 3d of the paper: high weights
    in the thin gaps between objects; for ISBI the background is the membrane).
    Objects are the 4-connected components of ``mask != 0``; with fewer than two
    objects the border term is zero. The border term is truncated where it is
    below ``1e-4 * w0``.

    Parameters
    ----------
    mask01_2d
        2D binary mask (nonzero = object/foreground).
    w0
        Amplitude of the border term (0 disables it).
    sigma
        Width of the border term, in pixels.
    balance
        Use :func:`class_balance_weights` for ``w_c`` (mean 1, minority class up
        to :data:`MAX_CLASS_RATIO` times heavier); otherwise ``w_c = 1``.

    Returns
    -------
    numpy.ndarray
        float32 weights ``> 0`` of the mask's shape.

    Raises
    ------
    UserInputError
        If the mask is not 2D or ``w0``/``sigma`` are out of range.
    """
    mask = np.asarray(mask01_2d)
    if mask.ndim != 2:
        raise UserInputError(f"border_weights needs one 2D mask, got shape {mask.shape}")
    if w0 < 0:
        raise UserInputError(f"w0 must be >= 0, got {w0}")
    if sigma <= 0:
        raise UserInputError(f"sigma must be > 0, got {sigma}")
    fg = mask != 0
    weights = class_balance_weights(fg) if balance else np.ones(fg.shape, np.float32)
    if w0 == 0 or fg.all() or not fg.any():
        return weights
    cutoff = sigma * math.sqrt(2.0 * math.log(1.0 / _BORDER_TOLERANCE))
    d1, d2 = _two_nearest_object_distances(fg, cutoff)
    near = ~fg & (d1 + d2 < cutoff)
    total = d1[near] + d2[near]
    weights[near] += (w0 * np.exp(-(total * total) / (2.0 * sigma * sigma))).astype(np.float32)
    return weights


def border_weights_stack(
    masks01: np.ndarray, w0: float = 10.0, sigma: float = 5.0, balance: bool = True
) -> np.ndarray:
    """:func:`border_weights` of every slice of a ``(Z, Y, X)`` (or 2D) mask stack.

    Returns
    -------
    numpy.ndarray
        float32 ``(Z, Y, X)``.
    """
    masks = np.asarray(masks01)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise UserInputError(f"expected a (Z, Y, X) mask stack, got shape {masks.shape}")
    out = np.empty(masks.shape, np.float32)
    for z in range(masks.shape[0]):
        out[z] = border_weights(masks[z], w0=w0, sigma=sigma, balance=balance)
    return out
