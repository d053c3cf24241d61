"""Model exchange: export a model folder to other tools' formats, import one back.

One entry point per direction, for the CLI and the dock alike:

* :func:`export_model` writes ``savedmodel`` (a TensorFlow SavedModel folder),
  ``onnx`` (one ``.onnx`` file), ``h5`` (HDF5 weights: ``.weights.h5`` or a legacy
  ``.h5`` model file, see :mod:`.weights_io`) or ``bioimageio`` (a bioimage.io model package
  ``.zip``, spec 0.5);
* :func:`import_bioimageio` turns a bioimage.io package with ``keras_v3``
  weights (e.g. our own export) into a model folder;
* :func:`check_bioimageio_package` validates a package with the bioimage.io
  tools (static validation, then ``bioimageio.core.test_model``).

Every export is float32, also for a model trained under mixed precision, and
every output file or folder is written atomically: nothing is left at
`output` unless the export completed, and an existing `output` is replaced
only with ``overwrite=True``. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

from ..atomic import check_writable
from ..errors import UserInputError
from .bioimageio import BioimageioOptions
from .bioimageio_check import PackageCheck, check_bioimageio_package
from .bioimageio_import import import_bioimageio

__all__ = [
    "EXPORT_FORMATS",
    "BioimageioOptions",
    "ExportFormat",
    "PackageCheck",
    "check_bioimageio_package",
    "default_output",
    "export_model",
    "import_bioimageio",
]

ExportFormat = Literal["bioimageio", "onnx", "savedmodel", "h5"]

#: The formats :func:`export_model` writes.
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)

_SUFFIX = {"bioimageio": ".zip", "onnx": ".onnx", "savedmodel": "", "h5": ".h5"}


def default_output(model_dir: str | Path, fmt: str) -> Path:
    """A sensible output path beside the model folder, e.g. ``model.bioimageio.zip``.

    Parameters
    ----------
    model_dir
        The model folder.
    fmt
        One of :data:`EXPORT_FORMATS`.
    """
    _check_format(fmt)
    model_dir = Path(model_dir)
    name = {
        "bioimageio": ".bioimageio.zip",
        "onnx": ".onnx",
        "savedmodel": "_savedmodel",
        "h5": ".weights.h5",
    }[fmt]
    return model_dir.with_name(model_dir.name + name)


def export_model(
    model_dir: str | Path,
    fmt: str,
    output: str | Path,
    overwrite: bool = False,
    *,
    options: BioimageioOptions | None = None,
    safe_mode: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Path:
    """Export a trained model folder.

    Parameters
    ----------
    model_dir
        Model folder written by training (``config.yaml`` + ``best.keras``...),
        or a ``.keras`` file inside one.
    fmt
        ``savedmodel``: TensorFlow SavedModel folder (Keras 3
        ``model.export(format="tf_saved_model")``; endpoint ``serve``).
        ``onnx``: one ONNX file (float32 input ``image`` ``(batch, y, x, 1)``,
        output ``probability``; opset 17).
        ``bioimageio``: bioimage.io model package ``.zip`` with keras_v3,
        TensorFlow SavedModel and ONNX weights, test tensors, cover and docs.
    output
        File (``.onnx``, ``.zip``) or folder (``savedmodel``) to write.
    overwrite
        Replace an existing `output` (only once the new one is complete).
    options
        bioimage.io name, authors, test image...; only for ``bioimageio``.
    safe_mode
        Load the checkpoint in Keras safe mode (refuses Lambda layers).
    on_step
        Called with a short description before each slow step (e.g. for a
        busy message in the GUI).

    Returns
    -------
    Path
        `output`.

    Raises
    ------
    UserInputError
        Unknown format, wrong suffix, existing `output` without `overwrite`,
        an unloadable model folder or an unwritable `output`.
    """
    _check_format(fmt)
    from .model_folder import check_model_folder

    check_model_folder(model_dir)  # a wrong folder is one line, before any progress
    output = Path(output)
    suffix = _SUFFIX[fmt]
    if fmt == "h5":  # .weights.h5 (Keras 3 weights) or .h5/.hdf5 (legacy model file)
        from .weights_io import save_weights_h5

        if options is not None:
            raise UserInputError("bioimage.io options apply only to the bioimageio format")
        (on_step or (lambda _text: None))("writing the HDF5 weights")
        return save_weights_h5(model_dir, output, overwrite, safe_mode)
    if suffix and output.suffix.lower() != suffix:
        raise UserInputError(f"a {fmt} export is a {suffix} file, got {output}")
    if options is not None and fmt != "bioimageio":
        raise UserInputError("bioimage.io options apply only to the bioimageio format")
    check_writable(output, overwrite)
    step = on_step or (lambda _text: None)
    if fmt == "bioimageio":
        from .bioimageio import write_bioimageio_package

        step(f"loading {model_dir}")
        return write_bioimageio_package(model_dir, output, overwrite, options, safe_mode, step)

    from .model_folder import load_model
    from .portable import float32_model

    step(f"loading {model_dir}")
    model = float32_model(load_model(model_dir, safe_mode=safe_mode).keras_model)
    if fmt == "onnx":
        from .onnx_export import write_onnx

        step("converting to ONNX")
        return write_onnx(model, output, overwrite)
    from .portable import write_saved_model

    step("writing the TensorFlow SavedModel")
    return write_saved_model(model, output, overwrite)


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise UserInputError(
            f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}"
        )
