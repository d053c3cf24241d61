"""What the readers share: file suffixes, format sniffing, slice order and read errors.

Every read problem becomes a :class:`~napari_unet.engine.errors.UserInputError`
with a one-line message that names the file (:func:`_fail`, :func:`_reason`).

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = ["IMAGE_SUFFIXES", "PLAIN_SUFFIXES", "TIFF_SUFFIXES", "list_image_files"]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: File types recognised as slices inside a folder.
IMAGE_SUFFIXES = TIFF_SUFFIXES + PLAIN_SUFFIXES
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def _fail(path: Path | str, reason: str) -> UserInputError:
    """A one-line UserInputError naming `path`."""
    return UserInputError(f"cannot read {path}: {reason}")


def _reason(exc: BaseException) -> str:
    """First line of an exception message, shortened, for user-facing errors."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``slice2`` before ``slice10``."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _is_zarr(path: Path) -> bool:
    """True for a ``.zarr`` folder or a folder holding zarr metadata."""
    return path.is_dir() and (
        path.suffix.lower() == ".zarr" or any((path / m).exists() for m in _ZARR_MARKERS)
    )


def _check_readable_file(path: Path) -> None:
    """Raise UserInputError for missing, unreadable or empty files."""
    if not path.exists():
        raise _fail(path, "no such file or folder")
    if not os.access(path, os.R_OK):
        raise _fail(path, "permission denied")
    if path.is_file() and path.stat().st_size == 0:
        raise _fail(path, "the file is empty (0 bytes)")


def _is_tiff(path: Path) -> bool:
    """True for a TIFF suffix or, failing that, TIFF magic bytes."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _shape_text(shape: tuple[int, ...]) -> str:
    """``(1, 20, 30)`` -> ``20x30`` for messages about slice sizes."""
    return "x".join(str(s) for s in (shape[1:] if len(shape) == 3 and shape[0] == 1 else shape))


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files (TIFF, PNG, JPEG, BMP) directly in `folder`, in natural order.

    Hidden files (``.name``) are skipped.

    Parameters
    ----------
    folder
        Folder to list.

    Returns
    -------
    list of pathlib.Path
        ``slice2`` before ``slice10``.
    """
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))
