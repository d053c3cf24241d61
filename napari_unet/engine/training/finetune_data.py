"""The data of a fine-tuning: corrected slices, held-back bands and the parent's replayed data.

:func:`prepare_finetune_data` normalizes the corrected slices exactly as prediction will
(the parent's normalization over the whole stack given), turns the corrections into a sparse
annotation (0 unlabeled, 1 background, 2 foreground), holds back one band of each corrected
slice for calibrating the threshold (:func:`.calibration.holdout_bands`), and mixes in
the parent's own training data so the model does not forget it (:func:`mix_for_finetuning`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..data.mask_kinds import mask_targets, resolve_mask_kind
from ..data.preprocess import as_stack, normalize_percentile
from ..errors import UserInputError
from ..inference.postprocess import SPARSE_UNLABELED
from .calibration import holdout_bands

__all__ = ["FinetuneData", "mix_for_finetuning", "prepare_finetune_data", "replay_data"]


@dataclass
class FinetuneData:
    """What a fine-tuning trains on and calibrates with.

    Attributes
    ----------
    images, sparse
        The mix of corrected (bands held back) and replayed slices: normalized float32 and
        sparse labels.
    slices
        The corrected slice indices.
    corrected_images
        The corrected slices, normalized, whole (for predicting the held-back bands).
    corrected_truth, corrected_labelled
        Their {0, 1} truth and labelled pixels.
    bands
        The held-back (rows, columns) of each corrected slice.
    facts
        Facts for ``metadata.json``.
    """

    images: np.ndarray
    sparse: np.ndarray
    slices: list[int]
    corrected_images: np.ndarray
    corrected_truth: np.ndarray
    corrected_labelled: np.ndarray
    bands: list[tuple[slice, slice]]
    facts: dict[str, Any] = field(default_factory=dict)


def _pad_to(images: np.ndarray, sparse: np.ndarray, shape: tuple[int, int]):
    """Pad slices to `shape`: image reflected, labels unlabeled (0)."""
    pad_h, pad_w = shape[0] - images.shape[1], shape[1] - images.shape[2]
    if pad_h == 0 and pad_w == 0:
        return images, sparse
    pad = [(0, 0), (0, pad_h), (0, pad_w)]
    mode = "reflect" if min(images.shape[1:]) > 1 else "edge"
    return np.pad(images, pad, mode=mode), np.pad(sparse, pad, constant_values=SPARSE_UNLABELED)


def mix_for_finetuning(
    images: np.ndarray,
    sparse: np.ndarray,
    replay_images: np.ndarray | None,
    replay_sparse: np.ndarray | None,
    replay_fraction: float,
    max_replay_slices: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Stack corrected and replayed slices so that about `replay_fraction` of the
    patches come from the original data (corrected slices are repeated).

    Both inputs must already be normalized float32; labels are sparse.
    """
    if replay_images is None or replay_fraction <= 0 or len(replay_images) == 0:
        return images, sparse
    rng = np.random.default_rng(seed)
    count = min(len(replay_images), max_replay_slices)
    chosen = np.sort(rng.choice(len(replay_images), size=count, replace=False))
    replay_images, replay_sparse = replay_images[chosen], replay_sparse[chosen]
    corrected_share = 1.0 - replay_fraction
    repeats = max(1, math.ceil(corrected_share * count / (replay_fraction * len(images))))
    images = np.concatenate([images] * repeats)
    sparse = np.concatenate([sparse] * repeats)
    shape = (
        max(images.shape[1], replay_images.shape[1]),
        max(images.shape[2], replay_images.shape[2]),
    )
    images, sparse = _pad_to(images, sparse, shape)
    replay_images, replay_sparse = _pad_to(replay_images, replay_sparse, shape)
    return (
        np.concatenate([images, replay_images]).astype(np.float32),
        np.concatenate([sparse, replay_sparse]),
    )


def normalize_like_parent(stack: np.ndarray, parent_config: Config) -> np.ndarray:
    """Flat-field correction and normalization exactly as the parent's prediction does."""
    data = parent_config.data
    if data.flat_field:
        from ..data.flatfield import correct_flat_field

        stack = correct_flat_field(stack, None, data.flat_field_sigma)
    if data.normalization == "none":
        return np.asarray(stack, dtype=np.float32)
    low, high = data.percentiles
    return normalize_percentile(stack, low, high, per_slice=data.normalization == "slice")


def to_sparse(masks: np.ndarray, kind: str) -> np.ndarray:
    """Masks of a resolved `kind` as a sparse annotation (0 unlabeled, 1 bg, 2 fg)."""
    target, weight = mask_targets(masks, kind)
    return np.where(weight > 0, target.astype(np.uint8) + 1, SPARSE_UNLABELED).astype(np.uint8)


def replay_data(
    parent_config: Config, parent_dir: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The parent's own training data, if its files still exist (relative paths are taken
    relative to the model folder; models trained from layers keep a copy in ``data/``)."""
    data = parent_config.data
    if not (data.images and data.masks):
        return None, None
    image_path, mask_path = (parent_dir / data.images), (parent_dir / data.masks)
    if not (image_path.exists() and mask_path.exists()):
        return None, None
    from ..io.stacks import read_stack

    try:
        images = as_stack(read_stack(image_path))
        masks = as_stack(read_stack(mask_path))
    except UserInputError:
        return None, None
    if images.shape != masks.shape:
        return None, None
    return images, masks


def _corrected_slices(sparse: np.ndarray, slices: Any) -> list[int]:
    """The slices to learn from: `slices`, else every slice holding a labelled pixel and
    some foreground (an all-background slice of a dense mask file counts as not corrected)."""
    if slices is None:
        slices = [
            z
            for z in range(len(sparse))
            if (sparse[z] != SPARSE_UNLABELED).any() and (sparse[z] == 2).any()
        ]
    slices = sorted({int(z) for z in slices})
    if not slices:
        raise UserInputError("no corrected slices: paint corrections or mark slices as reviewed")
    if min(slices) < 0 or max(slices) >= len(sparse):
        raise UserInputError(f"slice indices {slices} are outside the stack of {len(sparse)}")
    return slices


def prepare_finetune_data(
    parent_config: Config,
    parent_dir: Path,
    images: np.ndarray,
    masks: np.ndarray,
    slices: Any = None,
    mask_kind: str = "auto",
    replay_images: np.ndarray | None = None,
    replay_masks: np.ndarray | None = None,
    replay_fraction: float = 0.5,
    max_replay_slices: int = 8,
    holdout_fraction: float = 0.2,
) -> FinetuneData:
    """Corrected slices (with held-back bands) mixed with the parent's data.

    Parameters
    ----------
    parent_config, parent_dir
        The parent model's config and folder.
    images
        (Z, Y, X) raw stack the corrections were made on (normalized as a whole, as
        prediction of this stack will be).
    masks
        The corrections, same shape (binary, sparse or instances: see `mask_kind`).
    slices
        Corrected slice indices; None = every slice with labels and some foreground.
    mask_kind
        ``data.mask_kind`` of the corrections.
    replay_images, replay_masks
        Original data to mix in; default the parent's own data.
    replay_fraction, max_replay_slices
        Share of patches from the original data, and at most this many of its slices.
    holdout_fraction
        Share of each corrected slice's width held back for calibration (0 = none).
    """
    images = as_stack(np.asarray(images))
    masks = as_stack(np.asarray(masks))
    if images.shape != masks.shape:
        raise UserInputError(
            f"corrections {masks.shape} do not match the image stack {images.shape}"
        )
    if not np.asarray(masks).any():
        raise UserInputError("no corrected slices: paint corrections or mark slices as reviewed")
    kind, kind_message = resolve_mask_kind(masks, mask_kind)
    sparse_all = to_sparse(masks, kind)
    chosen = _corrected_slices(sparse_all, slices)
    corrected = sparse_all[chosen]
    normalized = normalize_like_parent(images, parent_config)[chosen]
    seed = parent_config.train.seed
    bands = (
        holdout_bands(corrected.shape[1:], len(chosen), holdout_fraction, seed)
        if holdout_fraction > 0
        else []
    )
    training = corrected.copy()
    for z, (rows, cols) in enumerate(bands):
        training[z, rows, cols] = SPARSE_UNLABELED
    if replay_images is None:
        replay_images, replay_masks = replay_data(parent_config, parent_dir)
    replay_norm = replay_sparse = None
    if replay_images is not None and replay_masks is not None:
        replay_images = as_stack(np.asarray(replay_images))
        replay_norm = normalize_like_parent(replay_images, parent_config)
        replay_masks = as_stack(np.asarray(replay_masks))
        replay_kind, _ = resolve_mask_kind(replay_masks, parent_config.data.mask_kind)
        replay_sparse = to_sparse(replay_masks, replay_kind)
    mixed_images, mixed_sparse = mix_for_finetuning(
        normalized, training, replay_norm, replay_sparse, replay_fraction, max_replay_slices, seed
    )
    replayed = 0 if replay_norm is None else min(len(replay_norm), max_replay_slices)
    return FinetuneData(
        images=mixed_images,
        sparse=mixed_sparse,
        slices=chosen,
        corrected_images=normalized,
        corrected_truth=(corrected == 2).astype(np.uint8),
        corrected_labelled=corrected != SPARSE_UNLABELED,
        bands=bands,
        facts={
            "finetuned_on_slices": chosen,
            "mask_kind": kind_message,
            "replayed_original_slices": int(replayed),
            "replay_fraction": replay_fraction if replayed else 0.0,
            "held_back_for_calibration": [
                {"slice": chosen[i], "columns": [band[1].start, band[1].stop]}
                for i, band in enumerate(bands)
            ],
        },
    )
