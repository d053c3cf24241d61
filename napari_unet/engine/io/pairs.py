"""Folders of image/mask pairs: ``NAME.tif`` beside ``NAME_mask.tif`` (Kaggle's ultrasound
nerve segmentation layout, ``1_1.tif`` and ``1_1_mask.tif``).

Such a folder is read as images plus masks, not as one stack: :func:`slice_files` lists
its images only (so predicting the folder predicts the images), :func:`find_pairs` pairs
every image with its mask, and
:func:`~napari_unet.engine.io.sources.read_pairs` reads both stacks with the images'
names as ids. A folder without any ``*_mask`` file is an ordinary folder of slices.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from .files import list_image_files

__all__ = ["MASK_SUFFIX", "find_pairs", "is_pair_folder", "slice_files"]

#: What a mask's file name adds to its image's (before the suffix).
MASK_SUFFIX = "_mask"


def _split(files: list[Path]) -> tuple[list[Path], dict[str, Path]]:
    """(images, masks by their image's stem) among `files`."""
    masks = {p.stem[: -len(MASK_SUFFIX)]: p for p in files if p.stem.endswith(MASK_SUFFIX)}
    images = [p for p in files if not p.stem.endswith(MASK_SUFFIX)]
    return images, masks


def is_pair_folder(folder: str | Path) -> bool:
    """True if `folder` holds images and masks named ``NAME`` and ``NAME_mask``.

    Every ``*_mask`` file must have its image; a folder whose ``*_mask`` files lack
    partners (e.g. a folder of masks alone) is an ordinary folder of slices.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return False
    images, masks = _split(list_image_files(folder))
    stems = {p.stem for p in images}
    return bool(masks) and all(stem in stems for stem in masks)


def slice_files(folder: str | Path) -> list[Path]:
    """The image files of a folder in natural order, without the masks of a pair folder."""
    folder = Path(folder).expanduser()
    files = list_image_files(folder)
    if not is_pair_folder(folder):
        return files
    return _split(files)[0]


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Every ``(image, mask)`` of a pair folder, in the images' natural order.

    Raises
    ------
    UserInputError
        If the folder is not a pair folder or an image has no mask.
    """
    folder = Path(folder).expanduser()
    if not is_pair_folder(folder):
        raise UserInputError(f"{folder} holds no NAME / NAME{MASK_SUFFIX} image pairs")
    images, masks = _split(list_image_files(folder))
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise UserInputError(
            f"{folder}: {len(missing)} image(s) have no {MASK_SUFFIX} file ({shown})"
        )
    return [(p, masks[p.stem]) for p in images]
