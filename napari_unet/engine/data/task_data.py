"""Preparing data for every task: input channels, targets and the slice split.

:func:`~napari_unet.engine.data.prepare.prepare_data` calls these for what depends on
``model.task`` and ``model.in_channels``:

* :func:`load_images`: a path or array as ``(Z, Y, X)`` (one channel) or ``(Z, Y, X, C)``;
* :func:`per_channel`: a ``(Z, Y, X)`` preparation step (percentile normalization,
  resizing) applied to every channel of a multi-channel stack;
* :func:`target_kind` and :func:`task_targets`: the training target and pixel weights.
  A binary task goes through :mod:`~napari_unet.engine.data.mask_kinds` (binary, sparse,
  instances); multiclass masks are class indices ``0 .. K-1`` (uint8, weight 1);
  regression targets are float32, normalized as ``data.target_normalization`` says
  (microDL's z-score by default), weight 0 where the target is not finite;
* :func:`split_indices`: the train / validation / test slices (``data.split`` by index,
  else a random ``data.val_fraction``).

Pure numpy; never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = [
    "check_eager_only",
    "grey",
    "load_images",
    "multiclass_targets",
    "normalize_target",
    "per_channel",
    "split_indices",
    "target_kind",
    "task_targets",
]

#: z-score denominators below this are treated as a constant image.
_MIN_STD = 1e-8


def load_images(images: Any, what: str, in_channels: int | None) -> np.ndarray:
    """Read (if a path) and lay out an image stack for training or prediction.

    Parameters
    ----------
    images
        Path (grey stack, ``(Z, C, Y, X)`` TIFF/``.npy``/zarr) or array
        (``(Z, C, Y, X)`` or anything :func:`~napari_unet.engine.io.arrays.as_stack` takes).
    what
        ``training``, ``validation``... for error messages.
    in_channels
        ``model.in_channels``; None accepts what the data has.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` for one channel, ``(Z, Y, X, C)`` for several.
    """
    from ..io.channels import channels_last, read_channels, to_channel_stack

    if isinstance(images, (str, Path)):
        stack = read_channels(images)
    else:
        stack = to_channel_stack(images, f"{what} images")
    return channels_last(stack, in_channels, f"{what} images")


def grey(images: np.ndarray) -> np.ndarray:
    """A ``(Z, Y, X)`` view of an image stack: the channel mean of ``(Z, Y, X, C)``."""
    return images.mean(axis=-1, dtype=np.float32) if images.ndim == 4 else images


def per_channel(step: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """`step` (on ``(Z, Y, X)``) applied to each channel of ``(Z, Y, X, C)`` stacks."""

    def apply(stack: np.ndarray) -> np.ndarray:
        if stack.ndim != 4:
            return step(stack)
        return np.stack([step(stack[..., c]) for c in range(stack.shape[-1])], axis=-1)

    return apply


def check_eager_only(config: Any, lazy: bool) -> None:
    """Refuse what only the in-memory preparation supports, before any data is read.

    Raises
    ------
    UserInputError
        Lazy (larger-than-memory) training of a task other than binary, of several
        channels or with ``data.split``.
    """
    model = config.model
    if not lazy:
        return
    if model.task != "binary" or (model.in_channels or 1) > 1 or config.data.split is not None:
        raise UserInputError(
            "training on data larger than memory (dask/zarr) supports binary, single-channel "
            "data without data.split; load the stack into memory or use model.task binary"
        )


def target_kind(masks: np.ndarray, config: Any) -> tuple[str, str]:
    """What the masks are for this task, and a sentence saying so (for ``metadata.json``)."""
    task = config.model.task
    if task == "binary":
        from .mask_kinds import resolve_mask_kind

        return resolve_mask_kind(masks, config.data.mask_kind)
    if task == "multiclass":
        names = ", ".join(f"{i} {n}" for i, n in enumerate(config.model.classes))
        return "multiclass", f"masks taken as class indices ({names})"
    how = config.data.target_normalization
    return "regression", f"targets taken as float images (normalization {how})"


def multiclass_targets(masks: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Class-index target (uint8) and weight 1 from a mask stack of class indices.

    Raises
    ------
    UserInputError
        If the masks hold fractions, negative values or an index without a class name.
    """
    masks = np.asarray(masks)
    if masks.dtype.kind == "f":
        if not np.all(np.isfinite(masks)) or not np.all(masks == np.round(masks)):
            raise UserInputError("multiclass masks must hold whole class indices")
    low, high = (masks.min(), masks.max()) if masks.size else (0, 0)
    if low < 0 or high >= len(classes):
        raise UserInputError(
            f"the masks hold class index {int(high) if high >= len(classes) else int(low)} "
            f"but model.classes names {len(classes)} classes (0 .. {len(classes) - 1})"
        )
    return masks.astype(np.uint8), np.ones(masks.shape, dtype=np.float32)


def normalize_target(stack: np.ndarray, how: str, percentiles: tuple[float, float]):
    """A regression target as float32, normalized, with its statistics.

    Parameters
    ----------
    stack
        ``(Z, Y, X)`` target.
    how
        ``zscore`` (mean and std of the stack, as microDL), ``zscore_slice`` (per
        slice), ``percentile`` (the data's percentiles to 0 and 1) or ``none``.
    percentiles
        ``data.percentiles`` (for ``percentile``).

    Returns
    -------
    target, stats
        float32 target (non-finite values become 0) and ``{"how", "offset", "scale"}``
        (per-slice lists for ``zscore_slice``): ``target = (raw - offset) / scale``.
    """
    raw = np.asarray(stack, dtype=np.float64)
    finite = np.isfinite(raw)
    values = np.where(finite, raw, np.nan)
    if how == "none":
        offset, scale = np.zeros(1), np.ones(1)
    elif how == "zscore":
        offset, scale = np.array([np.nanmean(values)]), np.array([np.nanstd(values)])
    elif how == "zscore_slice":
        offset = np.nanmean(values.reshape(len(raw), -1), axis=1)
        scale = np.nanstd(values.reshape(len(raw), -1), axis=1)
    else:
        low, high = np.nanpercentile(values, percentiles)
        offset, scale = np.array([low]), np.array([high - low])
    scale = np.where(np.isfinite(scale) & (scale > _MIN_STD), scale, 1.0)
    offset = np.where(np.isfinite(offset), offset, 0.0)
    shape = (-1, 1, 1)
    target = (np.where(finite, raw, 0.0) - offset.reshape(shape)) / scale.reshape(shape)
    target = np.where(finite, target, 0.0).astype(np.float32)
    stats = {"how": how, "offset": offset.tolist(), "scale": scale.tolist()}
    return target, stats


def task_targets(stack: np.ndarray, kind: str, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """Target and pixel weights of a (resized) mask stack of kind `kind`.

    Returns
    -------
    target, weight
        binary: uint8 {0, 1}; multiclass: uint8 class indices; regression: float32
        normalized target (weight 0 where the raw target is not finite). Weights are
        float32 (0 = not labelled).
    """
    if kind == "multiclass":
        return multiclass_targets(stack, config.model.classes)
    if kind == "regression":
        data = config.data
        target, _ = normalize_target(stack, data.target_normalization, data.percentiles)
        weight = np.isfinite(np.asarray(stack, dtype=np.float32)).astype(np.float32)
        return target, weight
    from .mask_kinds import mask_targets

    return mask_targets(stack, kind)


def split_indices(
    config: Any, n_slices: int, explicit_val: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training, validation and test slice indices.

    ``data.split`` names them; otherwise ``data.val_fraction`` of the slices is held out
    at random (none with explicit validation data) and there is no test part.

    Raises
    ------
    UserInputError
        If a split index is beyond the stack, or ``split.val`` meets explicit validation data.
    """
    from .preprocess import split_train_val

    split = config.data.split
    if split is None:
        if explicit_val:
            return np.arange(n_slices), np.array([], dtype=int), np.array([], dtype=int)
        train, val = split_train_val(n_slices, config.data.val_fraction, config.train.seed)
        return train, val, np.array([], dtype=int)
    parts = [np.asarray(split.indices(p), dtype=np.int64) for p in ("train", "val", "test")]
    beyond = [int(i) for part in parts for i in part if i >= n_slices]
    if beyond:
        raise UserInputError(
            f"data.split names slice {beyond[0]} but the training stack has {n_slices} slices "
            f"(0 .. {n_slices - 1})"
        )
    if explicit_val and parts[1].size:
        raise UserInputError("data.split.val and data.val_images both name validation data")
    return parts[0], parts[1], parts[2]
