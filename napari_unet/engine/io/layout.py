"""The seed dataset layout: ``train/``, ``val/`` and ``test/`` folders of images and masks.

:func:`find_dataset_layout` finds them (case-insensitive, with the usual
synonyms: ``labels`` for ``masks``, ``validation`` for ``val``, ...).

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from .files import TIFF_SUFFIXES

__all__ = ["find_dataset_layout"]

_LAYOUT_SPLITS = {"train": ("train", "training"), "val": ("val", "validation"), "test": ("test",)}
_LAYOUT_KINDS = {"images": ("images", "image"), "masks": ("masks", "labels", "label", "mask")}


def _child(folder: Path | None, names: tuple[str, ...]) -> Path | None:
    """The first existing child of `folder` named one of `names` (case-insensitive)."""
    if folder is None or not folder.is_dir():
        return None
    children = {p.name.lower(): p for p in folder.iterdir() if not p.name.startswith(".")}
    for name in names:
        if name in children:
            return children[name]
    return None


def find_dataset_layout(root: str | Path) -> dict[str, Path | None]:
    """Recognise the seed dataset layout under `root`::

        root/train/images   root/train/masks   (also labels, label, mask; image)
        root/val/images     root/val/masks     (optional; also validation)
        root/test/images    root/test/masks    (optional)

    Parameters
    ----------
    root
        Dataset folder.

    Returns
    -------
    dict
        Keys ``train_images``, ``train_masks``, ``val_images``, ``val_masks``,
        ``test_images``, ``test_masks``; each a path (folder or file such as
        ``images.tif``) or None when missing.

    Raises
    ------
    UserInputError
        If `root` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserInputError(f"dataset folder {root} does not exist or is not a folder")
    layout: dict[str, Path | None] = {}
    for split, split_names in _LAYOUT_SPLITS.items():
        split_dir = _child(root, split_names)
        for kind, kind_names in _LAYOUT_KINDS.items():
            found = _child(split_dir, kind_names)
            if found is None and split_dir is not None:
                found = _child(split_dir, _with_suffixes(kind_names))
            layout[f"{split}_{kind}"] = found
    return layout


def _with_suffixes(names: tuple[str, ...]) -> tuple[str, ...]:
    """``images`` -> ``images.tif``, ``images.tiff``, ``images.zarr`` ..."""
    return tuple(f"{n}{s}" for n in names for s in (*TIFF_SUFFIXES, ".zarr"))
