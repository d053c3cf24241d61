"""Augmented training patches written to disk, to look at what the network is fed.

:func:`augmented_samples` draws patches from the very stream training uses (the data
prepared by :func:`~napari_unet.engine.data.prepare.prepare_data`, the patch sampling and
augmentation of :func:`~napari_unet.engine.data.pipeline.make_train_dataset`, seeded by
``train.seed``); :func:`write_augmented` writes them as image/mask pairs
``0000.tif`` + ``0000_mask.tif`` ... (the ``NAME`` / ``NAME_mask`` layout that
:mod:`~napari_unet.engine.io.pairs` reads back as training data).

Images are the normalized float32 patches (``(C, P, P)`` with several channels); masks
are uint8 ``{0, 255}`` (binary), class indices (multiclass) or float32 (regression). With
``fmt="png"`` images are scaled to uint8 (``[0, 1] -> 0..255``, clipped).
TensorFlow is imported by the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError

__all__ = ["augmented_samples", "write_augmented"]


def augmented_samples(
    config: Any, count: int, images: Any = None, masks: Any = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`count` augmented ``(image, target)`` patches of the training stream.

    Parameters
    ----------
    config
        The run's config (data, augmentation, ``train.patch_size``, ``train.seed``).
    count
        Number of patches.
    images, masks
        Arrays or paths overriding ``config.data``.

    Yields
    ------
    image, target
        float32 ``(P, P)`` or ``(P, P, C)``; target ``(P, P)`` (float32 values).
    """
    from .pipeline import make_train_dataset
    from .prepare import prepare_data

    if count < 1:
        raise UserInputError(f"--samples must be at least 1, got {count}")
    prepared = prepare_data(config, images, masks)
    if not isinstance(prepared.train_images, np.ndarray):
        raise UserInputError("augment reads data that fits in memory")
    one = config.with_overrides({"train.batch_size": 1})
    stream = make_train_dataset(
        prepared.train_images,
        prepared.train_masks,
        prepared.train_weights,
        one,
        deterministic=True,
    )
    for x, y, _ in stream.take(count):
        image = np.asarray(x)[0]
        yield (image[..., 0] if image.shape[-1] == 1 else image), np.asarray(y)[0, ..., 0]


def _image_for(image: np.ndarray, fmt: str) -> np.ndarray:
    data = np.moveaxis(image, -1, 0) if image.ndim == 3 else image  # (C, P, P) for TIFF
    if fmt == "png":
        return np.round(np.clip(data, 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(data, dtype=np.float32)


def _target_for(target: np.ndarray, task: str) -> np.ndarray:
    if task == "regression":
        return target.astype(np.float32)
    if task == "multiclass":
        return np.round(target).astype(np.uint8)
    return np.where(target > 0.5, 255, 0).astype(np.uint8)


def write_augmented(
    output: str | Path,
    samples: Iterator[tuple[np.ndarray, np.ndarray]],
    task: str = "binary",
    fmt: str = "tif",
    overwrite: bool = False,
) -> list[Path]:
    """Write ``(image, target)`` patches as ``NNNN.<fmt>`` and ``NNNN_mask.<fmt>`` pairs.

    Parameters
    ----------
    output
        Folder to create (written under a temporary name, then renamed).
    samples
        From :func:`augmented_samples`.
    task
        ``model.task`` (how targets are stored).
    fmt
        ``tif`` or ``png`` (PNG: one-channel images and non-float targets only).
    overwrite
        Replace an existing folder.

    Returns
    -------
    list of Path
        The image files, in order (each beside its ``_mask`` file).
    """
    import imageio.v3 as iio
    import tifffile

    from ..atomic import atomic_dir

    if fmt not in ("tif", "png"):
        raise UserInputError(f"augmented samples are written as tif or png, not {fmt}")
    if fmt == "png" and task == "regression":
        raise UserInputError("regression targets are float images: write them as tif")
    folder = Path(output).expanduser()
    written: list[str] = []
    with atomic_dir(folder, overwrite) as tmp:
        for index, (image, target) in enumerate(samples):
            name = f"{index:04d}"
            data, mask = _image_for(image, fmt), _target_for(target, task)
            if fmt == "png" and data.ndim == 3:
                raise UserInputError("multi-channel patches are written as tif")
            for suffix, array in (("", data), ("_mask", mask)):
                path = tmp / f"{name}{suffix}.{fmt}"
                if fmt == "tif":
                    tifffile.imwrite(path, array)
                else:
                    iio.imwrite(path, array)
            written.append(f"{name}.{fmt}")
    return [folder / name for name in written]
