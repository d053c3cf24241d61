"""Where the data comes from: explicit files, a dataset root or a frames folder.

Training data is found in this order:

1. arrays or paths passed to the engine (the CLI's ``--images``/``--masks``);
2. ``data.frames`` (a frames folder, see :mod:`~napari_unet.engine.io.frames`),
   read from ``data.frames.folder``, else from the ``images`` folder;
3. ``data.images`` / ``data.masks``;
4. ``data.dataset``: a root with ``train/images`` and ``train/masks`` (and
   optionally ``val/images`` and ``val/masks``), see
   :func:`~napari_unet.engine.io.stacks.find_dataset_layout`.

Prediction of a dataset root reads its ``test/images``. No TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = ["layout_sources", "predict_input", "resolve_sources"]


def layout_sources(root: str | Path) -> dict[str, str | None]:
    """Training (and validation) paths of a dataset root.

    Returns
    -------
    dict
        ``images``, ``masks``, ``val_images``, ``val_masks`` (the last two None
        unless the root has both ``val/images`` and ``val/masks``).

    Raises
    ------
    UserInputError
        If the root lacks ``train/images`` or ``train/masks``.
    """
    from .stacks import find_dataset_layout

    layout = find_dataset_layout(root)
    if layout["train_images"] is None or layout["train_masks"] is None:
        raise UserInputError(
            f"dataset {root} needs train/images and train/masks (folders or stacks)"
        )
    has_val = layout["val_images"] is not None and layout["val_masks"] is not None
    return {
        "images": str(layout["train_images"]),
        "masks": str(layout["train_masks"]),
        "val_images": str(layout["val_images"]) if has_val else None,
        "val_masks": str(layout["val_masks"]) if has_val else None,
    }


def resolve_sources(
    config: Any,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
) -> tuple[Any, Any, Any, Any]:
    """Images, masks and validation data (arrays, paths or None) to train on.

    Parameters
    ----------
    config
        The whole :class:`~napari_unet.engine.config.Config`.
    images, masks, val_images, val_masks
        Explicit data; each None falls back to the config as described in the
        module docstring.
    """
    data = config.data
    if data.frames is not None and masks is None and data.masks is None:
        from .frames import load_frame_pair

        folder = data.frames.folder or images or data.images
        if not isinstance(folder, (str, Path)):
            raise UserInputError(
                "data.frames needs a frames folder: set data.frames.folder or --images"
            )
        images, masks, _ = load_frame_pair(folder, data.frames)
    if images is None and data.images is None and data.dataset:
        found = layout_sources(data.dataset)
        images, masks = found["images"], masks if masks is not None else found["masks"]
        if val_images is None and data.val_images is None and found["val_images"]:
            val_images, val_masks = found["val_images"], found["val_masks"]
    return images, masks, val_images, val_masks


def predict_input(path: str | Path) -> Path:
    """The images to predict for `path`: a dataset root's ``test/images``, else `path`.

    A folder counts as a dataset root when it holds no image files itself but
    has ``test/images``.
    """
    from .stacks import find_dataset_layout, list_image_files

    path = Path(path).expanduser()
    if not path.is_dir() or list_image_files(path):
        return path
    test = find_dataset_layout(path)["test_images"]
    return Path(test) if test is not None else path
