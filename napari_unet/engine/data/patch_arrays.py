"""The numpy side of the input pipelines: checking, padding and tiling stacks.

:func:`check_stacks` validates the image, target and weight stacks the pipelines feed
and casts the target for the task (binary ``{0, 1}``, class indices, float);
:func:`pad_stack` pads slices smaller than a patch; :func:`val_tiles` cuts validation
slices into non-overlapping patches. Images are ``(Z, Y, X)`` or, with several input
channels, ``(Z, Y, X, C)``; targets and weights are always ``(Z, Y, X)``.

Pure numpy: the TensorFlow pipelines live in :mod:`~napari_unet.engine.data.pipeline`,
which re-exports these names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = ["check_stacks", "count_val_batches", "n_tiles", "pad_stack", "val_tiles"]


def check_stacks(
    images: Any, masks: Any, weights: Any, task: str = "binary"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated float32 images, the target as the task uses it, and float32 weights.

    Parameters
    ----------
    images
        ``(Z, Y, X)`` or ``(Z, Y, X, C)`` (a 2D image is one slice).
    masks
        ``(Z, Y, X)`` target.
    weights
        ``(Z, Y, X)`` or None.
    task
        ``binary`` (target becomes uint8 ``mask > 0``), ``multiclass`` (uint8 class
        indices, unchanged) or ``regression`` (float32, unchanged).

    Raises
    ------
    UserInputError
        If the shapes do not match or a stack is empty.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim == 2:
        images = images[None]
    if masks.ndim == 2:
        masks = masks[None]
    if images.ndim not in (3, 4):
        raise UserInputError(
            f"images must be a (Z, Y, X) or (Z, Y, X, C) stack, got shape {images.shape}"
        )
    if masks.shape != images.shape[:3]:
        raise UserInputError(f"masks shape {masks.shape} differs from images shape {images.shape}")
    if min(images.shape[:3]) == 0:
        raise UserInputError(f"empty image stack (shape {images.shape})")
    if weights is not None:
        weights = np.asarray(weights, np.float32)
        if weights.ndim == 2:
            weights = weights[None]
        if weights.shape != masks.shape:
            raise UserInputError(
                f"weights shape {weights.shape} differs from images shape {images.shape}"
            )
    if task == "regression":
        target = masks.astype(np.float32, copy=False)
    elif task == "multiclass":
        target = masks.astype(np.uint8, copy=False)
    else:
        target = (masks > 0).astype(np.uint8)
    return images.astype(np.float32, copy=False), target, weights


def _pad_mode(size: int, pad: int) -> str:
    return "reflect" if size > 1 else "edge"


def pad_stack(
    images: np.ndarray,
    masks: np.ndarray,
    weights: np.ndarray | None,
    min_h: int,
    min_w: int,
    multiple: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad ``(Z, H, W)`` stacks at the bottom/right (or centred when smaller than
    the minimum) so that H >= min_h and W >= min_w (and, with ``multiple``, are
    multiples of it). Image and mask are reflected; padded weight is 0 so padded
    pixels never count. Returns the weights as an array even if None was given.
    Images may carry a trailing channel axis ``(Z, H, W, C)``.
    """
    h, w = images.shape[1:3]
    if weights is None:
        weights = np.ones(masks.shape, np.float32)
    new_h, new_w = max(h, min_h), max(w, min_w)
    if multiple:
        new_h = int(math.ceil(new_h / multiple) * multiple)
        new_w = int(math.ceil(new_w / multiple) * multiple)
    if (new_h, new_w) == (h, w):
        return images, masks, weights
    top = (new_h - h) // 2 if h < min_h else 0
    left = (new_w - w) // 2 if w < min_w else 0
    pad = ((0, 0), (top, new_h - h - top), (left, new_w - w - left))

    def _pad(arr):
        out = arr
        # np.pad 'reflect' needs size > 1 per axis; pad axis by axis
        for axis, (before, after) in ((1, pad[1]), (2, pad[2])):
            if before or after:
                width = [(0, 0)] * out.ndim
                width[axis] = (before, after)
                out = np.pad(out, width, mode=_pad_mode(out.shape[axis], before + after))
        return out

    weights_pad = np.pad(weights, pad, mode="constant", constant_values=0)
    return _pad(images), _pad(masks), weights_pad.astype(np.float32)


def val_tiles(
    images: Any, masks: Any, weights: Any, patch_size: int, task: str = "binary"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut every slice into non-overlapping ``P x P`` tiles (row-major per slice).

    Borders are padded (image and mask reflected, weight 0). Returns
    ``(x, y, w)`` float32 arrays: ``x`` of shape ``(n_tiles, P, P, C)``, ``y`` and
    ``w`` of shape ``(n_tiles, P, P, 1)``.
    """
    p = int(patch_size)
    images, masks, weights = check_stacks(images, masks, weights, task)
    images, masks, weights = pad_stack(images, masks, weights, p, p, multiple=p)
    z, h, w = masks.shape

    def tiles(arr):
        channels = arr.shape[3] if arr.ndim == 4 else 1
        arr = arr.reshape(z, h // p, p, w // p, p, channels).transpose(0, 1, 3, 2, 4, 5)
        return np.ascontiguousarray(arr.reshape(-1, p, p, channels), dtype=np.float32)

    return tiles(images), tiles(masks), tiles(weights)


def n_tiles(shape: tuple[int, ...], p: int) -> int:
    """Number of ``p x p`` validation tiles of a ``(Z, Y, X[, C])`` or ``(Y, X)`` shape."""
    z, h, w = (1, *shape) if len(shape) == 2 else tuple(shape[:3])
    return int(z * math.ceil(max(h, p) / p) * math.ceil(max(w, p) / p))


def count_val_batches(images: Any, config: Any) -> int:
    """Number of batches :func:`~napari_unet.engine.data.pipeline.make_val_dataset` yields
    for ``images`` (an array or its shape)."""
    shape = tuple(images) if isinstance(images, (tuple, list)) else np.shape(images)
    n = n_tiles(shape, int(config.train.patch_size))
    return math.ceil(n / int(config.train.batch_size))
