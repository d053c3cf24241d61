"""Where the data comes from: explicit files, a dataset root or a frames folder.

Training data is found in this order:

1. arrays or paths passed to the engine (the CLI's ``--images``/``--masks``);
2. ``data.frames`` (a frames folder, see :mod:`~napari_unet.engine.io.frames`),
   read from ``data.frames.folder``, else from the ``images`` folder;
3. ``data.images`` / ``data.masks``; images that are a folder of ``NAME`` /
   ``NAME_mask`` pairs (Kaggle's layout, see :mod:`~napari_unet.engine.io.pairs`) without
   masks give both (:func:`read_pairs`);
4. ``data.dataset``: a root with ``train/images`` and ``train/masks`` (and
   optionally ``val/images`` and ``val/masks``), see
   :func:`~napari_unet.engine.io.stacks.find_dataset_layout`.

Prediction of a dataset root reads its ``test/images``. No TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from .pairs import find_pairs, is_pair_folder

__all__ = [
    "frames_as_channels",
    "layout_sources",
    "predict_input",
    "read_pairs",
    "read_predict_images",
    "resolve_sources",
]


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
        images, masks, _ = load_frame_pair(
            folder, data.frames, as_channels=frames_as_channels(config)
        )
    if masks is None and data.masks is None:
        pairs = images if images is not None else data.images
        if isinstance(pairs, (str, Path)) and is_pair_folder(pairs):
            images, masks, _ = read_pairs(pairs)
    if val_masks is None and data.val_masks is None:
        pairs = val_images if val_images is not None else data.val_images
        if isinstance(pairs, (str, Path)) and is_pair_folder(pairs):
            val_images, val_masks, _ = read_pairs(pairs)
    if images is None and data.images is None and data.dataset:
        found = layout_sources(data.dataset)
        images, masks = found["images"], masks if masks is not None else found["masks"]
        if val_images is None and data.val_images is None and found["val_images"]:
            val_images, val_masks = found["val_images"], found["val_masks"]
    return images, masks, val_images, val_masks


def frames_as_channels(config: Any) -> bool:
    """Whether the chosen frames of one slice become its input channels.

    ``data.frames.as_channels`` decides when set; otherwise yes when
    ``model.in_channels`` equals the number of chosen channels (more than one), or
    ``model.task`` is not binary and ``model.in_channels`` is not set. A binary config
    without ``in_channels`` reads every frame as a slice of its own, as before.
    """
    frames, model = config.data.frames, config.model
    if frames is None:
        return False
    if frames.as_channels is not None:
        return frames.as_channels
    if model.in_channels is None:
        return model.task != "binary"
    return model.in_channels == len(frames.channels) > 1


def read_pairs(folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images, masks and ids of a folder of ``NAME`` / ``NAME_mask`` pairs.

    Returns
    -------
    images, masks, ids
        ``(Z, Y, X)`` stacks in the images' natural order (masks as stored, e.g.
        ``{0, 255}``) and the images' file names without suffix.

    Raises
    ------
    UserInputError
        If an image has no mask, a file is unreadable or the slices differ in size.
    """
    from .readers import read_stack

    pairs = find_pairs(folder)
    images, masks = [], []
    for image_path, mask_path in pairs:
        image, mask = read_stack(image_path), read_stack(mask_path)
        for stack, path in ((image, image_path), (mask, mask_path)):
            if stack.shape[0] != 1:
                raise UserInputError(f"{path} holds {stack.shape[0]} slices, not one image")
            if images and stack.shape[1:] != images[0].shape:
                raise UserInputError(
                    f"{path.name} is {stack.shape[1]}x{stack.shape[2]} but "
                    f"{pairs[0][0].name} is {images[0].shape[0]}x{images[0].shape[1]}"
                )
        images.append(image[0])
        masks.append(mask[0])
    return np.stack(images), np.stack(masks), [p.stem for p, _ in pairs]


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


def read_predict_images(path: str | Path, config: Any) -> tuple[np.ndarray, list[str] | None]:
    """The images to predict at `path` with a model of `config`, and their ids if known.

    A frames folder (``frames_meta.csv`` or ``im_c###_z###_t###_p###`` files) of a model
    trained on ``data.frames`` is read with the model's channels (its target channel
    left out: it need not exist); a model of several input channels reads a
    ``(Z, C, Y, X)`` stack; anything else is a grey stack.

    Returns
    -------
    images, ids
        The stack and, for frames, the image frames' names without suffix (else None).
    """
    from .channels import read_channels
    from .frames import FRAMES_META, load_frame_pair, scan_frames
    from .readers import read_stack

    path = Path(path).expanduser()
    frames = config.data.frames
    if (
        frames is not None
        and path.is_dir()
        and ((path / FRAMES_META).exists() or scan_frames(path))
    ):
        channels = [c for c in frames.channels if c != frames.mask_channel]
        inputs = frames.model_copy(update={"mask_channel": None, "channels": channels})
        images, _, chosen = load_frame_pair(
            path, inputs, need_masks=False, as_channels=frames_as_channels(config)
        )
        return images, [Path(f.file_name).stem for f in chosen]
    if (config.model.in_channels or 1) > 1:
        return read_channels(path), None
    return read_stack(path), None
