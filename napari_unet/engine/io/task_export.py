"""Writing the prediction of any task, named after its input.

:func:`write_task_prediction` writes what ``napari-unet predict`` asks for, by the
model's task and the output's format (:func:`~napari_unet.engine.io.export.export_format`):

=============  ===========================================  ============================
task           default                                      ``--probabilities``
=============  ===========================================  ============================
binary         mask uint8 {0, 255}; ``.csv``: RLE           float32 probability
multiclass     class indices uint8 (tif, npy, png)          float32 ``(Z, K, Y, X)``
               ``--class NAME``: that class as a mask        that class's probability
               (every format, the RLE CSV too)
regression     float32 values (tif, npy)                    the same
=============  ===========================================  ============================

A folder output writes one PNG per input file, named after it (``names``); an RLE CSV
names each row by its input id (``ids``, e.g. Kaggle's ``img`` numbers). An ``.npy``
input laid out ``(N, Y, X, 1)`` (zhixuhao's ``imgs_test.npy``) gives an ``.npy`` output of
the same layout (``imgs_mask_test.npy``). Every write is atomic. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from .export import export_format, write_npy, write_png, write_prediction

__all__ = ["check_task_output", "npy_channel_layout", "write_task_prediction"]


def npy_channel_layout(source: str | Path) -> bool:
    """True for an ``.npy`` input of shape ``(N, Y, X, 1)`` (its output keeps the layout)."""
    source = Path(source)
    if source.suffix.lower() != ".npy" or not source.is_file():
        return False
    try:
        shape = np.load(source, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError):
        return False
    return len(shape) == 4 and shape[-1] == 1


def check_task_output(
    output: str | Path, task: str, probabilities: bool, class_name: str | None
) -> str:
    """Refuse, before predicting, an output the task cannot be written to.

    Returns
    -------
    str
        The format (``tiff``, ``npy``, ``csv``, ``png``).

    Raises
    ------
    UserInputError
        One line saying what to write instead.
    """
    kind = export_format(output)
    if class_name is not None and task != "multiclass":
        raise UserInputError("--class exports one class of a multiclass model")
    if task == "regression" and kind in ("csv", "png"):
        raise UserInputError(
            "a regression prediction is a float image: write it as .tif/.tiff or .npy"
        )
    if task == "multiclass" and class_name is None:
        if kind == "csv":
            raise UserInputError("an RLE CSV holds one class: add --class NAME")
        if probabilities and kind == "png":
            raise UserInputError("class probabilities go to .tif or .npy (or add --class NAME)")
    if probabilities and kind == "csv":
        raise UserInputError("an RLE CSV holds masks, not probabilities; use .tif or .npy")
    return kind


def write_task_prediction(
    output: str | Path,
    prediction: Any,
    probabilities: bool = False,
    class_name: str | None = None,
    ids: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    csv_columns: str = "img,pixels",
    channel_axis: bool = False,
    overwrite: bool = False,
) -> tuple[Path, str]:
    """Write a :class:`~napari_unet.engine.inference.prediction.Prediction` (see the
    module docstring).

    Parameters
    ----------
    output
        File (``.tif``, ``.npy``, ``.csv``) or folder (PNG slices).
    prediction
        The prediction (``probability``, ``task``, ``mask()``, ``labels()``, ...).
    probabilities
        Write probabilities (values for regression) instead of masks or labels.
    class_name
        Multiclass: write this class alone (name or index).
    ids, names
        RLE CSV row ids; PNG file names (default ``slice0000.png`` ...).
    csv_columns
        RLE CSV header (``img,pixels`` or ``ImageId,EncodedPixels``).
    channel_axis
        Give an ``.npy`` output a trailing axis of 1 (``(N, Y, X, 1)``, like its input).
    overwrite
        Replace an existing output.

    Returns
    -------
    path, format
        What was written.
    """
    task = prediction.task
    kind = check_task_output(output, task, probabilities, class_name)
    path = Path(str(output).rstrip("/\\") or str(output)).expanduser()
    if task == "multiclass" and class_name is not None:
        if probabilities:
            data = prediction.class_probability(class_name)
            return _write(path, kind, None, data, ids, names, csv_columns, channel_axis, overwrite)
        mask = prediction.class_mask(class_name)
        return _write(path, kind, mask, None, ids, names, csv_columns, channel_axis, overwrite)
    if task == "multiclass":
        if probabilities:  # (Z, K, Y, X): the class axis where ImageJ puts channels
            data = np.ascontiguousarray(np.moveaxis(prediction.probability, -1, 1))
        else:
            data = prediction.labels()
        return _write_raw(path, kind, data, names, channel_axis, overwrite)
    if task == "regression":
        data = np.asarray(prediction.probability, dtype=np.float32)
        return _write_raw(path, kind, data, names, channel_axis, overwrite)
    if probabilities:
        data = prediction.probability
        return _write(path, kind, None, data, ids, names, csv_columns, channel_axis, overwrite)
    mask = prediction.mask()
    return _write(path, kind, mask, None, ids, names, csv_columns, channel_axis, overwrite)


def _write(path, kind, mask01, probability, ids, names, csv_columns, channel_axis, overwrite):
    """A mask or probability through :func:`~napari_unet.engine.io.export.write_prediction`."""
    if channel_axis and kind == "npy":
        from .writers import mask_to_uint8

        data = mask_to_uint8(mask01) if mask01 is not None else np.asarray(probability, "float32")
        return write_npy(path, data[..., None], overwrite=overwrite), kind
    return write_prediction(
        path,
        mask01=mask01,
        probability=probability,
        overwrite=overwrite,
        ids=ids,
        csv_columns=csv_columns,
        names=names,
    )


def _write_raw(path, kind, data, names, channel_axis, overwrite):
    """Labels, class probabilities or values as they are (TIFF, ``.npy`` or PNG)."""
    from ..atomic import check_writable
    from .writers import write_tiff

    check_writable(path, overwrite=overwrite)
    if kind == "npy":
        write_npy(path, data[..., None] if channel_axis else data, overwrite=overwrite)
    elif kind == "tiff":
        write_tiff(path, data, overwrite=overwrite)
    else:
        write_png(path, data, overwrite=overwrite, names=names)
    return path, kind
