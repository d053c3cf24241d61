"""``napari-unet predict`` for volumes larger than memory, and on dask clusters.

The predict command goes blockwise (:mod:`napari_unet.engine.inference.blockwise`) when
the output ends in ``.zarr``, when ``--blockwise`` or ``--scheduler`` is given,
or when the input is larger than :data:`~napari_unet.engine.io.lazy.LAZY_BYTES`
(a quarter of the memory). :mod:`napari_unet.cli.predict` wires it in; TensorFlow is
imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..engine.errors import UserInputError
from .options import predict_config, predict_source

__all__ = ["add_blockwise_arguments", "run_blockwise_predict", "wants_blockwise"]

_BLOCKWISE_OUTPUTS = (".zarr", ".tif", ".tiff")


def add_blockwise_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the large-volume options to the ``predict`` parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``predict`` sub-parser.
    """
    group = parser.add_argument_group(
        "large volumes",
        "blockwise prediction: automatic for a .zarr output or an input larger than a "
        "quarter of the memory",
    )
    group.add_argument(
        "--blockwise", action="store_true", help="predict block by block (bounded memory)"
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask.distributed scheduler (e.g. tcp://host:8786) to run the blocks on",
    )
    group.add_argument(
        "--probability-dtype",
        choices=("uint8", "float16", "float32"),
        help="stored probability: uint8 = round(255 p) (zarr default), float16, float32 "
        "(TIFF default)",
    )
    group.add_argument("--block-slices", type=int, help="slices per block (default: automatic)")
    group.add_argument(
        "--block-size", type=int, help="block side in Y and X (default: whole slices)"
    )


def wants_blockwise(args: argparse.Namespace) -> bool:
    """True if this predict command should run blockwise.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``predict`` command line.

    Returns
    -------
    bool
        ``--blockwise`` or ``--scheduler`` given, a ``.zarr`` output, or an input
        file or zarr store larger than the in-memory limit.
    """
    if getattr(args, "blockwise", False) or getattr(args, "scheduler", None):
        return True
    if str(args.output).lower().rstrip("/").endswith(".zarr"):
        return True
    source = Path(args.input).expanduser()
    is_zarr_dir = source.is_dir() and (
        source.suffix.lower() == ".zarr"
        or any((source / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))
    )
    if not (source.is_file() or is_zarr_dir):
        return False
    from ..engine.io.lazy import is_large

    try:
        return is_large(source)
    except UserInputError:
        return False  # the in-memory path reports the problem


def run_blockwise_predict(args: argparse.Namespace, callback: Any) -> int:
    """Run ``napari-unet predict`` blockwise.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``predict`` command line.
    callback : callable
        Receives the engine's progress events.

    Returns
    -------
    int
        The exit code (0).

    Raises
    ------
    UserInputError
        For an output that is neither ``.zarr`` nor ``.tif``, or a model path that
        is not a model folder.
    """
    from ..engine.inference.blockwise import BlockwiseOptions, predict_blockwise
    from ..engine.model.model_folder import load_model

    output = Path(args.output).expanduser()
    suffix = output.suffix.lower()
    if suffix not in _BLOCKWISE_OUTPUTS:
        raise UserInputError(
            f"blockwise prediction writes a .zarr folder or a .tif stack, not {output.name}"
        )
    tiff = suffix in (".tif", ".tiff")
    dtype = args.probability_dtype or ("float32" if tiff else "uint8")
    options = BlockwiseOptions(
        block_slices=args.block_slices,
        block_size=args.block_size,
        probability_dtype=dtype,
        tiff_content="probability" if (tiff and args.probabilities) else "mask",
        tiff_dtype=dtype,
        overwrite=args.overwrite,
    )
    if not args.scheduler:
        from ..engine.model.devices import configure_devices_for_model

        configure_devices_for_model(args.model, getattr(args, "gpu", None))

    client = None
    if args.scheduler:
        from ..engine.inference.distributed import connect
        from ..engine.model.model_folder import ModelFolder

        client = connect(args.scheduler)
        model: Any = Path(args.model).expanduser().resolve()
        if not (model / "config.yaml").exists():
            raise UserInputError(f"{model} is not a model folder: config.yaml is missing")
        model_config = ModelFolder(model).load_config()
        config = predict_config(_ConfigOnly(model_config), args)
    else:
        model = load_model(args.model, safe_mode=not getattr(args, "unsafe_load", False))
        config = predict_config(model, args)

    source = predict_source(args.input)  # a dataset root's test/images, else the input
    try:
        result = predict_blockwise(
            model, source, output, config, options, client=client, callback=callback
        )
    finally:
        if client is not None:
            client.close()
    if not args.quiet:
        print(
            f"wrote {output} {result.shape} blockwise ({result.blocks} blocks, "
            f"{result.elapsed:.1f} s)",
            file=sys.stderr,
        )
    return 0


class _ConfigOnly:
    """What :func:`~napari_unet.cli.options.predict_config` needs of a model: its config."""

    def __init__(self, config: Any) -> None:
        self.config = config
