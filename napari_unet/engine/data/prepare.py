"""Reading, checking, normalizing and splitting the training data.

:func:`prepare_data` turns the images and masks named by a config (or given as
arrays) into a :class:`~napari_unet.engine.data.prepared_data.PreparedData`:
normalized float32 images, {0,1} targets and per-pixel weights, split into
training and validation slices. Lazy inputs go to
:mod:`~napari_unet.engine.data.lazy_sources`, cached ones through
:mod:`~napari_unet.engine.data.patch_cache`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import UserInputError
from .prepared_data import PreparedData

__all__ = ["PreparedData", "prepare_data", "split_labels"]


def split_labels(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets and weights from a mask stack.

    Dense masks (two values) become a {0,1} target with weight 1. A sparse
    annotation layer (values 0 = unlabeled, 1 = background, 2 = foreground)
    becomes target ``mask == 2`` with weight 0 on unlabeled pixels.
    """
    values = np.unique(masks)
    if values.size and set(values.tolist()) <= {0, 1, 2} and 2 in values:
        return (masks == 2).astype(np.uint8), (masks > 0).astype(np.float32)
    from ..io.stacks import binarize_mask

    return binarize_mask(masks), np.ones(masks.shape, dtype=np.float32)


def _load_pair(images: Any, masks: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read (if paths) and check an image stack and its mask stack.

    Parameters
    ----------
    images, masks
        Arrays or paths of image files.
    what
        ``training`` or ``validation``, for the error messages.

    Returns
    -------
    images, masks
        ``(Z, Y, X)`` stacks of the same shape.

    Raises
    ------
    UserInputError
        If a stack is unreadable or malformed, the shapes differ, or the masks
        hold NaN or complex values.
    """
    from ..io.stacks import check_image, check_pair, read_stack
    from .preprocess import as_stack

    if isinstance(images, (str, Path)):
        images = read_stack(images)
    if isinstance(masks, (str, Path)):
        masks = read_stack(masks)
    check_image(np.asarray(images), f"{what} images")
    check_image(np.asarray(masks), f"{what} masks")
    images, masks = as_stack(np.asarray(images)), as_stack(np.asarray(masks))
    check_pair(images, masks, f"{what} images", f"{what} masks")
    if np.iscomplexobj(masks) or np.isnan(masks.astype(np.float32, copy=False)).any():
        raise UserInputError(f"{what} masks contain NaN or complex values")
    return images, masks


def prepare_data(
    config: Config,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
) -> PreparedData:
    """Read, check, normalize and split the data named by `config` or given as arrays.

    The data may also come from ``data.dataset`` or ``data.frames`` (see
    :mod:`~napari_unet.engine.io.sources`); with ``data.patch_cache`` the prepared
    arrays are tiled and cached on disk (see :mod:`~napari_unet.engine.data.patch_cache`).
    Dask/zarr arrays and stacks larger than memory stay lazy: patches are read
    on demand (see :mod:`~napari_unet.engine.data.lazy_sources`).

    Parameters
    ----------
    config
        The run's configuration (``data`` and ``train`` sections).
    images, masks, val_images, val_masks
        Arrays or paths overriding ``config.data``.

    Returns
    -------
    PreparedData
        Training (and, if any, validation) images, targets and weights.

    Raises
    ------
    UserInputError
        If the data is missing, unreadable, malformed or has no labelled pixels.
    """
    from ..io.lazy import is_lazy_training_input

    if is_lazy_training_input(config, images):
        from .lazy_sources import prepare_data as prepare_lazy_data

        return prepare_lazy_data(config, images, masks, val_images, val_masks)
    if config.data.patch_cache:
        from .patch_cache import cached_prepare

        sources = (images, masks, val_images, val_masks)
        return cached_prepare(config, sources, lambda: _prepare_data(config, *sources))
    return _prepare_data(config, images, masks, val_images, val_masks)


def _prepare_data(config: Config, *sources: Any) -> PreparedData:
    """:func:`prepare_data` without the cache; `sources` = images, masks, val images, val masks."""
    from ..io.sources import resolve_sources
    from .flatfield import correct_flat_field, estimate_flat_field
    from .foreground import apply_foreground
    from .preprocess import normalize_percentile, resize_stack, split_train_val
    from .weights import border_weights_stack

    data_cfg = config.data
    images, masks, val_images, val_masks = resolve_sources(config, *sources)
    images = images if images is not None else data_cfg.images
    masks = masks if masks is not None else data_cfg.masks
    if images is None or masks is None:
        raise UserInputError("training needs images and masks (--images and --masks)")
    images, masks = _load_pair(images, masks, "training")
    explicit_val = val_images is not None or data_cfg.val_images is not None
    if explicit_val:
        val_images = val_images if val_images is not None else data_cfg.val_images
        val_masks = val_masks if val_masks is not None else data_cfg.val_masks
        if val_masks is None:
            raise UserInputError("validation images were given without validation masks")
        val_images, val_masks = _load_pair(val_images, val_masks, "validation")

    low, high = data_cfg.percentiles
    per_slice = data_cfg.normalization == "slice"
    sigma = data_cfg.flat_field_sigma
    field = estimate_flat_field(images, sigma) if data_cfg.flat_field else None

    def normalize(stack: np.ndarray) -> np.ndarray:
        if field is not None:
            stack = correct_flat_field(stack, field, sigma)
        if data_cfg.normalization == "none":
            out = np.asarray(stack, dtype=np.float32)
        else:
            out = normalize_percentile(stack, low, high, per_slice=per_slice)
        if data_cfg.resize is not None:
            out = resize_stack(out, tuple(data_cfg.resize), order=1)
        return out

    def targets(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if data_cfg.resize is not None:
            stack = resize_stack(stack, tuple(data_cfg.resize), order=0)
        target, weight = split_labels(stack)
        border = config.train.border_weights
        if border.enabled:
            weight = weight * border_weights_stack(target, border.w0, border.sigma)
        return target, weight.astype(np.float32)

    description: dict[str, Any] = {"train_slices": images.shape[0]}
    if explicit_val:
        train_idx = np.arange(images.shape[0])
        val_idx = np.array([], dtype=int)
    else:
        train_idx, val_idx = split_train_val(
            images.shape[0], data_cfg.val_fraction, config.train.seed
        )
    description["train_indices"] = [int(i) for i in train_idx]
    description["val_indices"] = [int(i) for i in val_idx]

    norm_images = normalize(images)
    target, weight = targets(masks)
    weight = apply_foreground(weight, norm_images, data_cfg.foreground)
    if weight[train_idx].sum() == 0:
        raise UserInputError("the training masks have no labelled pixels")
    prepared = PreparedData(
        train_images=norm_images[train_idx],
        train_masks=target[train_idx],
        train_weights=weight[train_idx],
        val_images=None,
        val_masks=None,
        val_weights=None,
        description=description,
    )
    if explicit_val:
        prepared.val_images = normalize(val_images)
        prepared.val_masks, prepared.val_weights = targets(val_masks)
        prepared.val_weights = apply_foreground(
            prepared.val_weights, prepared.val_images, data_cfg.foreground
        )
        description["val_slices"] = int(val_images.shape[0])
    elif len(val_idx):
        prepared.val_images = norm_images[val_idx]
        prepared.val_masks = target[val_idx]
        prepared.val_weights = weight[val_idx]
    return prepared
