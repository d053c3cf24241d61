"""Fine-tuning on corrected slices: the correct-and-retrain loop.

The user corrects a few predicted slices; :func:`finetune_iter` warm-starts
from the current model and trains on those slices mixed with the model's
original training data (so it does not forget it), for a short time budget,
writing a new model version. It yields the same :class:`TrainEvent` stream as
training, so the dock's live plot and progress work unchanged.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..data.preprocess import as_stack, normalize_percentile
from ..errors import UserInputError
from ..events import TrainEvent, drain
from ..inference.postprocess import SPARSE_UNLABELED, annotation_convention, to_sparse_annotation
from ..model.model_folder import ModelFolder

__all__ = ["finetune", "finetune_iter", "mix_for_finetuning"]


def _as_sparse(masks: np.ndarray) -> np.ndarray:
    """Masks in the sparse convention (0 unlabeled, 1 background, 2 foreground)."""
    if annotation_convention(masks) == "sparse":
        return masks.astype(np.uint8)
    from ..io.stacks import binarize_mask

    return to_sparse_annotation(binarize_mask(masks))


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


def _normalize_like_parent(stack: np.ndarray, parent_config: Config) -> np.ndarray:
    """Flat-field correction and normalization exactly as the parent's prediction does."""
    data = parent_config.data
    if data.flat_field:
        from ..data.flatfield import correct_flat_field

        stack = correct_flat_field(stack, None, data.flat_field_sigma)
    if data.normalization == "none":
        return np.asarray(stack, dtype=np.float32)
    low, high = data.percentiles
    return normalize_percentile(stack, low, high, per_slice=data.normalization == "slice")


def _replay_data(
    parent_config: Config, parent_dir: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The parent's own training data, if its files still exist (relative paths
    are taken relative to the model folder)."""
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


def finetune_iter(
    parent: str | Path,
    images: np.ndarray,
    masks: np.ndarray,
    slices: list[int] | np.ndarray | None = None,
    output: str | Path | None = None,
    max_minutes: float | None = 2.0,
    max_cpu_minutes: float | None = None,
    learning_rate_factor: float = 0.05,
    replay_images: np.ndarray | None = None,
    replay_masks: np.ndarray | None = None,
    replay_fraction: float = 0.5,
    max_replay_slices: int = 8,
    stop: threading.Event | None = None,
    metadata: dict[str, Any] | None = None,
) -> Generator[TrainEvent, None, Any]:
    """Fine-tune the model in `parent` on corrected slices.

    Parameters
    ----------
    parent
        Model folder to start from (its weights and config).
    images
        (Z, Y, X) raw image stack the corrections were made on.
    masks
        Corrections: a dense mask stack (only `slices` are used) or a sparse
        annotation (0 = unlabeled, 1 = background, 2 = foreground).
    slices
        Corrected (or reviewed) slice indices; None uses every slice that
        holds labels.
    output
        New model folder; defaults to the next version beside `parent`.
    max_minutes
        Wall-clock budget.
    max_cpu_minutes
        CPU-time budget (whichever budget ends first stops training).
    learning_rate_factor
        Fine-tuning learning rate as a fraction of the parent's.
    replay_images, replay_masks
        Original training data to mix in; defaults to the parent's own data
        files when they still exist.
    replay_fraction
        Share of patches drawn from the original data.
    max_replay_slices
        At most this many original slices are mixed in.
    stop
        Set it to stop after the current batch.
    metadata
        Extra facts for the new version's ``metadata.json``.
    """
    from ..model.versions import VersionStore
    from .train import train_iter

    parent_folder = ModelFolder(Path(parent))
    parent_config = parent_folder.load_config()
    images = as_stack(np.asarray(images))
    masks = as_stack(np.asarray(masks))
    if images.shape != masks.shape:
        raise UserInputError(
            f"corrections {masks.shape} do not match the image stack {images.shape}"
        )
    if annotation_convention(masks) == "empty":
        raise UserInputError("no corrected slices: paint corrections or mark slices as reviewed")
    sparse = _as_sparse(masks)
    if slices is None:
        slices = [z for z in range(len(sparse)) if (sparse[z] != SPARSE_UNLABELED).any()]
    slices = sorted({int(z) for z in slices})
    if not slices:
        raise UserInputError("no corrected slices: paint corrections or mark slices as reviewed")
    if min(slices) < 0 or max(slices) >= len(images):
        raise UserInputError(f"slice indices {slices} are outside the stack of {len(images)}")
    normalized = _normalize_like_parent(images, parent_config)[slices]
    corrected = sparse[slices]
    if replay_images is None:
        replay_images, replay_masks = _replay_data(parent_config, parent_folder.path)
    replay_norm = replay_sparse = None
    if replay_images is not None and replay_masks is not None:
        replay_images = as_stack(np.asarray(replay_images))
        replay_norm = _normalize_like_parent(replay_images, parent_config)
        replay_sparse = _as_sparse(as_stack(np.asarray(replay_masks)))
    mixed_images, mixed_sparse = mix_for_finetuning(
        normalized,
        corrected,
        replay_norm,
        replay_sparse,
        replay_fraction,
        max_replay_slices,
        seed=parent_config.train.seed,
    )
    if output is None:
        output = VersionStore(parent_folder.path.parent).next_path()
    settings = parent_config.to_dict()
    settings["output"] = str(output)
    settings["data"].update(
        images=None,
        masks=None,
        val_images=None,
        val_masks=None,
        val_fraction=0.0,
        normalization="none",
        flat_field=False,
    )
    settings["train"].update(
        init_from=str(parent_folder.path),
        learning_rate=parent_config.train.learning_rate * learning_rate_factor,
        max_minutes=max_minutes,
        max_cpu_minutes=max_cpu_minutes,
        epochs=10_000,
        steps_per_epoch=10,
        early_stopping_patience=None,
        monitor="last",
        freeze_batch_norm=True,
    )
    config = Config.model_validate(settings)
    # the data above are already normalized: keep the parent's normalization in the saved config,
    # with its data paths made absolute so later versions can still replay the original data
    saved_data = parent_config.data.model_dump()
    for key in ("images", "masks", "val_images", "val_masks"):
        if saved_data.get(key):
            saved_data[key] = str((parent_folder.path / saved_data[key]).resolve())
    facts = {
        "finetuned_on_slices": slices,
        "replayed_original_slices": int(
            0 if replay_norm is None else min(len(replay_norm), max_replay_slices)
        ),
        **(metadata or {}),
    }
    result = yield from train_iter(config, mixed_images, mixed_sparse, stop=stop, metadata=facts)
    _restore_data_section(Path(result.model_dir), saved_data)
    return result


def _restore_data_section(model_dir: Path, data: dict[str, Any]) -> None:
    """Write the parent's data/normalization settings into the new version's config,
    so prediction with it normalizes raw input exactly as the parent did."""
    folder = ModelFolder(model_dir)
    config = folder.load_config()
    folder.save_config(Config.model_validate({**config.to_dict(), "data": data}))


def finetune(*args: Any, callback: Any = None, **kwargs: Any) -> Any:
    """Blocking form of :func:`finetune_iter`."""
    return drain(finetune_iter(*args, **kwargs), callback)
