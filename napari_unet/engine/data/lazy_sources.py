"""Training from stacks larger than memory: patches are read from disk on demand.

:class:`DaskSource` is a :class:`~napari_unet.engine.data.pipeline.PatchSource` over
lazy ``(Z, Y, X)`` image and mask stacks (dask arrays, zarr arrays, or paths
opened with :func:`~napari_unet.engine.io.lazy.as_lazy` -- :class:`ZarrSource`):
each training patch reads just its ``(z, y0, x0, h, w)`` window (the zarr/TIFF
chunks under it), normalizes it with statistics computed once from a strided
subsample of the whole stack, and turns the mask window into target and
weight. Nothing else of the stack is loaded; validation slices (a bounded
number) are held in memory.

:func:`prepare_data` is what :func:`napari_unet.engine.training.train.prepare_data`
calls when :func:`is_lazy_training_input` says the images are lazy (a dask or
zarr array) or larger than :data:`~napari_unet.engine.io.lazy.LAZY_BYTES`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import UserInputError
from ..io.lazy import as_lazy, is_lazy_training_input, read_region, volume_stats
from .pipeline import MAX_POINTS, PatchSource, SamplingTable
from .preprocess import MAX_STATS_PIXELS, apply_normalization, split_train_val

__all__ = [
    "MAX_VAL_PIXELS",
    "DaskSource",
    "ZarrSource",
    "is_lazy_training_input",
    "mask_kind",
    "prepare_data",
]

#: At most this many validation pixels are loaded into memory (whole slices).
MAX_VAL_PIXELS = 2**24

MaskKind = Literal["binary", "probability", "sparse"]


def mask_kind(sample: np.ndarray) -> MaskKind:
    """How a mask stack encodes labels, judged from a sample of its values.

    ``sparse``: annotation layer values ``{0, 1, 2}`` with some 2 (0 =
    unlabelled); ``probability``: floats in ``[0, 1]`` with values strictly
    between (thresholded at 0.5); ``binary``: anything else (nonzero = 1).
    Mirrors :func:`~napari_unet.engine.training.train.split_labels` and
    :func:`~napari_unet.engine.io.stacks.binarize_mask`.
    """
    values = np.unique(sample)
    if sample.dtype.kind == "f":
        if np.isnan(values).any():
            raise UserInputError("masks contain NaN values")
        if values.size and values.min() >= 0 and values.max() <= 1:
            if np.any((values > 0) & (values < 1)):
                return "probability"
    if values.size and set(values.tolist()) <= {0, 1, 2} and 2 in values:
        return "sparse"
    return "binary"


def mask_targets(window: np.ndarray, kind: MaskKind) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 {0,1} target, float32 weight) of a mask window."""
    if kind == "sparse":
        return (window == 2).astype(np.uint8), (window > 0).astype(np.float32)
    if kind == "probability":
        target = (window >= 0.5).astype(np.uint8)
    else:
        target = (window != 0).astype(np.uint8)
    return target, np.ones(window.shape, np.float32)


class DaskSource(PatchSource):
    """Image and mask stacks read window by window (never whole).

    Parameters
    ----------
    images, masks
        ``(Z, Y, X)`` dask or zarr arrays (or anything sliceable) of one shape.
    stats
        Normalization ``(lo, hi)`` of the image stack (length 1 or Z).
    slices
        The slices of the stacks this source serves (e.g. the training split);
        default all. Source slice ``i`` is stack slice ``slices[i]``.
    kind
        Mask encoding (:func:`mask_kind`).
    labelled
        Source slices that hold labels (sparse masks); default all.
    """

    def __init__(
        self,
        images: Any,
        masks: Any,
        stats: tuple[Any, Any],
        slices: Any = None,
        kind: MaskKind = "binary",
        labelled: Any = None,
    ) -> None:
        if tuple(images.shape) != tuple(masks.shape) or len(images.shape) != 3:
            raise UserInputError(
                f"masks shape {tuple(masks.shape)} differs from images shape {tuple(images.shape)}"
            )
        self.images = images
        self.masks = masks
        self.lo, self.hi = (np.asarray(s, np.float64).reshape(-1) for s in stats)
        depth = int(images.shape[0])
        self.slices = np.arange(depth) if slices is None else np.asarray(slices, np.int64)
        self.kind = kind
        self.labelled = None if labelled is None else np.asarray(labelled, np.int64)
        self.shape = (len(self.slices), int(images.shape[1]), int(images.shape[2]))

    def read(self, z: int, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, ...]:
        index = int(self.slices[z])
        window = (index, slice(y0, y0 + h), slice(x0, x0 + w))
        raw = read_region(self.images, window)
        at = 0 if self.lo.size == 1 else index
        image = apply_normalization(raw, self.lo[at], self.hi[at])
        target, weight = mask_targets(read_region(self.masks, window), self.kind)
        return image, target, weight

    def sampling_table(self, max_points: int = MAX_POINTS, seed: int = 0) -> SamplingTable:
        if self.labelled is not None:
            return SamplingTable(slices=self.labelled)
        return SamplingTable(slices=np.arange(self.shape[0]))


class ZarrSource(DaskSource):
    """A :class:`DaskSource` opened from paths (zarr, OME-Zarr or TIFF stacks).

    Statistics come from a subsample of the images (:func:`volume_stats`) with
    the given percentiles; the mask encoding from a subsample of the masks.
    """

    def __init__(
        self,
        images: str | Path,
        masks: str | Path,
        percentiles: tuple[float, float] = (1.0, 99.8),
        per_slice: bool = False,
        slices: Any = None,
    ) -> None:
        lazy_images, lazy_masks = as_lazy(images, str(images)), as_lazy(masks, str(masks))
        stats = volume_stats(lazy_images, *percentiles, per_slice=per_slice)
        kind = mask_kind(_subsample(lazy_masks))
        super().__init__(lazy_images, lazy_masks, stats, slices, kind)


def _subsample(volume: Any, max_pixels: int = MAX_STATS_PIXELS) -> np.ndarray:
    """Every k-th slice, every 4th pixel (at most `max_pixels` values)."""
    depth, height, width = (int(s) for s in volume.shape)
    per_slice = math.ceil(height / 4) * math.ceil(width / 4)
    every = max(1, math.ceil(depth * per_slice / max_pixels))
    return read_region(
        volume, (slice(None, None, every), slice(None, None, 4), slice(None, None, 4))
    )


def _labelled_slices(masks: Any, slices: np.ndarray) -> np.ndarray:
    """Positions in `slices` whose (4-strided) mask has a label (sparse masks)."""
    keep = []
    for position, z in enumerate(slices):
        if read_region(masks, (int(z), slice(None, None, 4), slice(None, None, 4))).any():
            keep.append(position)
    return np.asarray(keep, np.int64)


def _check_supported(config: Any) -> None:
    data = config.data
    unsupported = []
    if data.resize is not None:
        unsupported.append("data.resize")
    if config.train.border_weights.enabled:
        unsupported.append("train.border_weights")
    if getattr(data, "flat_field", False):
        unsupported.append("data.flat_field")
    foreground = getattr(data, "foreground", None)
    if foreground is not None and getattr(foreground, "mode", "off") != "off":
        unsupported.append("data.foreground")
    if getattr(data, "patch_cache", None):
        unsupported.append("data.patch_cache")
    if unsupported:
        raise UserInputError(
            f"{', '.join(unsupported)} cannot be used when training from a stack larger than "
            "memory (lazy data); switch it off or train from a smaller stack"
        )


def _load_val(
    images: Any, masks: Any, slices: np.ndarray, stats: Any, kind: MaskKind
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalized images, targets and weights of `slices`, in memory."""
    lo, hi = (np.asarray(s, np.float64).reshape(-1) for s in stats)
    out_images, out_targets, out_weights = [], [], []
    for z in slices:
        raw = read_region(images, (int(z), slice(None), slice(None)))
        at = 0 if lo.size == 1 else int(z)
        out_images.append(apply_normalization(raw, lo[at], hi[at]))
        target, weight = mask_targets(read_region(masks, (int(z), slice(None), slice(None))), kind)
        out_targets.append(target)
        out_weights.append(weight)
    return np.stack(out_images), np.stack(out_targets), np.stack(out_weights)


def _val_budget(shape: tuple[int, ...]) -> int:
    return max(1, MAX_VAL_PIXELS // (int(shape[1]) * int(shape[2])))


def prepare_data(
    config: Any,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
) -> Any:
    """Lazy counterpart of :func:`napari_unet.engine.training.train.prepare_data`.

    The training images become a :class:`DaskSource` (``train_masks`` and
    ``train_weights`` are None); validation slices -- a held-out split, or the
    given validation stacks, at most :data:`MAX_VAL_PIXELS` pixels -- are
    loaded and normalized with the same statistics as in the eager path.
    """
    from ..io.stacks import check_pair
    from .prepared_data import PreparedData

    _check_supported(config)
    data_cfg = config.data
    images = images if images is not None else data_cfg.images
    masks = masks if masks is not None else data_cfg.masks
    if images is None or masks is None:
        raise UserInputError("training needs images and masks (--images and --masks)")
    lazy_images = as_lazy(images, "training images")
    lazy_masks = as_lazy(masks, "training masks")
    check_pair(lazy_images, lazy_masks, "training images", "training masks")
    low, high = data_cfg.percentiles
    per_slice = data_cfg.normalization == "slice"
    stats = volume_stats(lazy_images, low, high, per_slice)
    kind = mask_kind(_subsample(lazy_masks))
    depth = int(lazy_images.shape[0])
    explicit_val = val_images is not None or data_cfg.val_images is not None
    if explicit_val:
        train_idx, val_idx = np.arange(depth), np.array([], np.int64)
    else:
        train_idx, val_idx = split_train_val(depth, data_cfg.val_fraction, config.train.seed)
    labelled = _labelled_slices(lazy_masks, train_idx) if kind == "sparse" else None
    if labelled is not None and labelled.size == 0:
        raise UserInputError("the training masks have no labelled pixels")
    source = DaskSource(lazy_images, lazy_masks, stats, train_idx, kind, labelled)
    description: dict[str, Any] = {
        "lazy": True,
        "train_slices": len(train_idx),
        "shape": [int(s) for s in lazy_images.shape],
        "mask_encoding": kind,
        "normalization": {
            "lo": stats[0].tolist(),
            "hi": stats[1].tolist(),
            "subsampled": int(np.prod(lazy_images.shape)) > MAX_STATS_PIXELS,
        },
    }
    prepared = PreparedData(
        train_images=source,  # type: ignore[arg-type]
        train_masks=None,  # type: ignore[arg-type]
        train_weights=None,  # type: ignore[arg-type]
        val_images=None,
        val_masks=None,
        val_weights=None,
        description=description,
    )
    if explicit_val:
        val_images = val_images if val_images is not None else data_cfg.val_images
        val_masks = val_masks if val_masks is not None else data_cfg.val_masks
        if val_masks is None:
            raise UserInputError("validation images were given without validation masks")
        lazy_val = as_lazy(val_images, "validation images")
        lazy_val_masks = as_lazy(val_masks, "validation masks")
        check_pair(lazy_val, lazy_val_masks, "validation images", "validation masks")
        val_stats = volume_stats(lazy_val, low, high, per_slice)
        chosen = np.arange(min(int(lazy_val.shape[0]), _val_budget(lazy_val.shape)))
        val_kind = mask_kind(_subsample(lazy_val_masks))
        loaded = _load_val(lazy_val, lazy_val_masks, chosen, val_stats, val_kind)
        description["val_slices"] = int(chosen.size)
    else:
        chosen = val_idx[: _val_budget(lazy_images.shape)]
        loaded = _load_val(lazy_images, lazy_masks, chosen, stats, kind) if chosen.size else None
        description["val_indices"] = [int(i) for i in chosen]
    if loaded is not None:
        prepared.val_images, prepared.val_masks, prepared.val_weights = loaded
    return prepared
