"""Reading, checking, normalizing and splitting the training data.

:func:`prepare_data` turns the images and masks named by a config (or given as
arrays) into a :class:`~napari_unet.engine.data.prepared_data.PreparedData`:
normalized float32 images, {0,1} targets and per-pixel weights, split into
training and validation slices. Lazy inputs go to
:mod:`~napari_unet.engine.data.lazy_sources`, cached ones through
:mod:`~napari_unet.engine.data.patch_cache`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import StopRequested, UserInputError
from .mask_kinds import mask_targets, resolve_mask_kind
from .prepared_data import PreparedData

__all__ = ["PreparedData", "prepare_data", "split_labels"]

_log = logging.getLogger(__name__)


def split_labels(masks: np.ndarray, kind: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Targets and weights from a mask stack.

    Binary masks (two values) become a {0,1} target with weight 1; a sparse
    annotation (0 = unlabeled, 1 = background, 2 = foreground) becomes target
    ``mask == 2`` with weight 0 on unlabeled pixels; instance labels become
    foreground with touching objects kept apart. `kind` is ``data.mask_kind``
    (see :mod:`~napari_unet.engine.data.mask_kinds`).
    """
    resolved, _ = resolve_mask_kind(masks, kind)
    return mask_targets(masks, resolved)


def _load_pair(
    images: Any, masks: Any, what: str, in_channels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read (if paths) and check an image stack and its mask stack.

    Parameters
    ----------
    images, masks
        Arrays or paths of image files; images may have channels (``(Z, C, Y, X)``).
    what
        ``training`` or ``validation``, for the error messages.
    in_channels
        ``model.in_channels`` (None: as many as the images have).

    Returns
    -------
    images, masks
        ``(Z, Y, X)`` stacks of the same shape (images ``(Z, Y, X, C)`` with channels).

    Raises
    ------
    UserInputError
        If a stack is unreadable or malformed, the shapes differ, or the masks
        hold NaN or complex values.
    """
    from ..io.readers import reread_to_match
    from ..io.stacks import check_image, check_pair, read_stack
    from .preprocess import as_stack
    from .task_data import load_images

    image_source, mask_source = images, masks
    images = load_images(images, what, in_channels)
    if isinstance(masks, (str, Path)):
        masks = read_stack(masks)
    check_image(np.asarray(masks), f"{what} masks")
    masks = as_stack(np.asarray(masks))
    if in_channels is None and images.ndim == 4 and images.shape[0] == 1:
        # a (C, Y, X) file (an OME-TIFF of a grey stack is written as CYX) whose masks have C
        # slices: its channels are the slices
        if masks.shape[0] == images.shape[-1] > 1:
            _log.info(
                "%s images: %d channels read as slices to match the masks", what, masks.shape[0]
            )
            images = np.ascontiguousarray(np.moveaxis(images[0], -1, 0))
    # a one-page planar TIFF is a colour image or 3-4 grey slices: the partner decides
    masks = as_stack(reread_to_match(mask_source, masks, images.shape[0]))
    if images.ndim == 3:
        images = as_stack(reread_to_match(image_source, images, masks.shape[0]))
    plane = images[..., 0] if images.ndim == 4 else images
    check_pair(plane, masks, f"{what} images", f"{what} masks")
    if np.iscomplexobj(masks) or np.isnan(masks.astype(np.float32, copy=False)).any():
        raise UserInputError(f"{what} masks contain NaN or complex values")
    return images, masks


def _check_stop(stop: threading.Event | None, phase: str) -> None:
    """Raise :class:`StopRequested` (naming `phase`) if `stop` is set."""
    if stop is not None and stop.is_set():
        raise StopRequested(phase)


def prepare_data(
    config: Config,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
    stop: threading.Event | None = None,
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
    stop
        Checked between the phases (reading, normalizing, targets and weights,
        validation data).

    Returns
    -------
    PreparedData
        Training (and, if any, validation) images, targets and weights.

    Raises
    ------
    UserInputError
        If the data is missing, unreadable, malformed or has no labelled pixels.
    StopRequested
        If `stop` was set (the message names the phase it stopped before).
    """
    from ..io.lazy import is_lazy_training_input
    from .task_data import check_eager_only

    _check_stop(stop, "reading the data")
    lazy = is_lazy_training_input(config, images)
    check_eager_only(config, lazy)
    if lazy:
        from .lazy_sources import prepare_data as prepare_lazy_data

        return prepare_lazy_data(config, images, masks, val_images, val_masks)
    if config.data.patch_cache:
        from .patch_cache import cached_prepare

        sources = (images, masks, val_images, val_masks)
        return cached_prepare(config, sources, lambda: _prepare_data(config, *sources, stop=stop))
    return _prepare_data(config, images, masks, val_images, val_masks, stop=stop)


def _prepare_data(
    config: Config, *sources: Any, stop: threading.Event | None = None
) -> PreparedData:
    """:func:`prepare_data` without the cache; `sources` = images, masks, val images, val masks."""
    from ..io.sources import resolve_sources
    from .flatfield import correct_flat_field, estimate_flat_field
    from .foreground import apply_foreground
    from .preprocess import normalize_percentile, resize_stack
    from .task_data import grey, per_channel, split_indices, target_kind, task_targets
    from .weights import border_weights_stack

    data_cfg = config.data
    images, masks, val_images, val_masks = resolve_sources(config, *sources)
    images = images if images is not None else data_cfg.images
    masks = masks if masks is not None else data_cfg.masks
    if images is None or masks is None:
        raise UserInputError("training needs images and masks (--images and --masks)")
    in_channels = config.model.in_channels
    images, masks = _load_pair(images, masks, "training", in_channels)
    if images.ndim == 4 and data_cfg.flat_field:
        raise UserInputError("data.flat_field corrects single-channel images only")
    _check_stop(stop, "reading the validation data")
    explicit_val = val_images is not None or data_cfg.val_images is not None
    if explicit_val:
        val_images = val_images if val_images is not None else data_cfg.val_images
        val_masks = val_masks if val_masks is not None else data_cfg.val_masks
        if val_masks is None:
            raise UserInputError("validation images were given without validation masks")
        val_images, val_masks = _load_pair(
            val_images, val_masks, "validation", images.shape[-1] if images.ndim == 4 else 1
        )

    low, high = data_cfg.percentiles
    per_slice = data_cfg.normalization == "slice"
    sigma = data_cfg.flat_field_sigma
    field = estimate_flat_field(images, sigma) if data_cfg.flat_field else None

    @per_channel
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

    kind, kind_message = target_kind(masks, config)
    _log.info(kind_message)

    def targets(stack: np.ndarray, kind: str = kind) -> tuple[np.ndarray, np.ndarray]:
        if data_cfg.resize is not None:  # float targets bilinear, labels nearest
            order = 1 if kind == "regression" else 0
            stack = resize_stack(stack, tuple(data_cfg.resize), order=order)
        target, weight = task_targets(stack, kind, config)
        border = config.train.border_weights
        if border.enabled:
            weight = weight * border_weights_stack(target, border.w0, border.sigma)
        return target, weight.astype(np.float32)

    description: dict[str, Any] = {"train_slices": images.shape[0], "mask_kind": kind_message}
    train_idx, val_idx, test_idx = split_indices(config, images.shape[0], explicit_val)
    description["train_indices"] = [int(i) for i in train_idx]
    description["val_indices"] = [int(i) for i in val_idx]
    if len(test_idx):
        description["test_indices"] = [int(i) for i in test_idx]

    _check_stop(stop, "normalizing the images")
    norm_images = normalize(images)
    _check_stop(stop, "computing the targets and weights")
    target, weight = targets(masks)
    weight = apply_foreground(weight, grey(norm_images), data_cfg.foreground)
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
    if len(test_idx):  # scored after training, never trained on
        prepared.test_images = norm_images[test_idx]
        prepared.test_masks, prepared.test_weights = target[test_idx], weight[test_idx]
    _check_stop(stop, "preparing the validation data")
    if explicit_val:
        prepared.val_images = normalize(val_images)
        val_kind, _ = target_kind(val_masks, config)
        prepared.val_masks, prepared.val_weights = targets(val_masks, val_kind)
        prepared.val_weights = apply_foreground(
            prepared.val_weights, grey(prepared.val_images), data_cfg.foreground
        )
        description["val_slices"] = int(val_images.shape[0])
    elif len(val_idx):
        prepared.val_images = norm_images[val_idx]
        prepared.val_masks = target[val_idx]
        prepared.val_weights = weight[val_idx]
    return prepared
