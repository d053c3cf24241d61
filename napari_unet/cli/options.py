"""Command-line arguments shared by several commands, turned into engine settings.

Paths are made absolute, ``--images`` ... ``--dataset`` and ``--gpu`` become config
overrides, the predict options a validated predict config, and ``predict`` learns
which images a path names and the ``ImageId`` of each slice in an RLE CSV.
TensorFlow is not imported here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..engine.errors import UserInputError

__all__ = [
    "abs_path",
    "data_overrides",
    "predict_config",
    "predict_source",
    "rle_ids",
    "with_overrides",
]


def abs_path(path: str | None) -> str | None:
    """`path` with ``~`` expanded, made absolute; ``None`` for no path.

    Parameters
    ----------
    path : str or None
        A path given on the command line.

    Returns
    -------
    str or None
        The absolute path, or ``None`` if `path` is empty or ``None``.
    """
    return str(Path(path).expanduser().resolve()) if path else None


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """`config` with the command-line `overrides` applied.

    Parameters
    ----------
    config : Config
        The config read from YAML, or the defaults.
    overrides : dict
        Dotted keys (``"train.epochs"``) to values; ``None`` values are ignored.

    Returns
    -------
    Config
        The new config.

    Raises
    ------
    UserInputError
        If an override is invalid (one line naming the option).
    """
    try:
        return config.with_overrides(overrides)
    except ValueError as exc:
        from ..engine.config import _short_validation_message

        raise UserInputError(f"invalid option: {_short_validation_message(exc)}") from None


def predict_config(model: Any, args: argparse.Namespace) -> Any:
    """The model's predict config with ``--threshold``, ``--tile-size`` ... applied.

    Parameters
    ----------
    model : object
        Anything with a ``config`` attribute holding the model's config.
    args : argparse.Namespace
        The parsed ``predict`` or ``evaluate`` command line.

    Returns
    -------
    PredictConfig
        The validated predict config.

    Raises
    ------
    UserInputError
        If an option is invalid (one line naming the option).
    """
    overrides = {
        "threshold": args.threshold,
        "tile_size": getattr(args, "tile_size", None),
        "overlap": getattr(args, "overlap", None),
        "batch_size": getattr(args, "batch_size", None),
        "tta": True if args.tta else None,
    }
    data = model.config.predict.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return type(model.config.predict).model_validate(data)
    except ValueError as exc:
        from ..engine.config import _short_validation_message

        raise UserInputError(f"invalid option: {_short_validation_message(exc)}") from None


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides of the data flags (``--images`` ... ``--dataset``, ``--gpu``).

    ``--dataset ROOT`` fills images, masks (and validation data when the root has
    ``val/``) from the layout, unless the matching flag is given too.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``train`` or ``lr-find`` command line.

    Returns
    -------
    dict
        Dotted config keys to values (``None`` where a flag is not given).
    """
    overrides: dict[str, Any] = {
        "data.images": abs_path(getattr(args, "images", None)),
        "data.masks": abs_path(getattr(args, "masks", None)),
        "data.val_images": abs_path(getattr(args, "val_images", None)),
        "data.val_masks": abs_path(getattr(args, "val_masks", None)),
        "train.device.gpu": getattr(args, "gpu", None),
    }
    dataset = getattr(args, "dataset", None)
    if dataset:
        from ..engine.io.sources import layout_sources

        for key, value in layout_sources(abs_path(dataset)).items():
            if overrides[f"data.{key}"] is None:
                overrides[f"data.{key}"] = value
    return overrides


def predict_source(path: str) -> Path:
    """The images ``predict`` reads: a dataset root's ``test/images``, else `path`.

    Parameters
    ----------
    path : str
        The input given on the command line.

    Returns
    -------
    Path
        The image stack, image or folder of slices to predict.
    """
    from ..engine.io.sources import predict_input

    return predict_input(path)


def rle_ids(source: Path, count: int) -> list[str]:
    """Id of each predicted slice: the RLE CSV's first column, the PNG names.

    A folder of slices gives its file names without suffix; a single image its
    name; a stack ``<name>_<z>``.

    Parameters
    ----------
    source : Path
        The predicted images (see :func:`predict_source`).
    count : int
        Number of predicted slices.

    Returns
    -------
    list of str
        One id per slice.
    """
    from ..engine.io.pairs import slice_files

    if source.is_dir():  # a folder of NAME / NAME_mask pairs: the images' names
        stems = [p.stem for p in slice_files(source)]
        if len(stems) == count:
            return stems
    if count == 1:
        return [source.stem]
    return [f"{source.stem}_{z}" for z in range(count)]
