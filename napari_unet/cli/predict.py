"""``napari-unet predict``: predict masks or probabilities for a stack.

Small inputs are predicted in memory; a ``.zarr`` output, ``--blockwise``,
``--scheduler`` or an input larger than memory goes through
:mod:`napari_unet.cli.predict_blockwise`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .common import UNSAFE_HELP
from .options import predict_config, predict_source, rle_ids
from .predict_blockwise import add_blockwise_arguments, run_blockwise_predict, wants_blockwise
from .progress import progress_printer

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run"]

NAME = "predict"
NEEDS_TENSORFLOW = True


def add_parser(sub: SubParsers) -> None:
    """Add the ``predict`` sub-command to `sub`.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of the ``napari-unet`` parser.
    """
    predict = sub.add_parser(NAME, help="predict masks or probabilities for a stack")
    predict.add_argument("model", help="model folder written by train")
    predict.add_argument(
        "input", help="image stack, image, folder of slices or dataset root (test/images)"
    )
    predict.add_argument(
        "--output",
        "-o",
        required=True,
        help="output .tif/.tiff, .npy, .csv (run-length encoded) or a folder of PNG slices",
    )
    predict.add_argument("--gpu", type=int, help="GPU index to use")
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="write the float32 probability map (multiclass: every class, (Z, K, Y, X))",
    )
    predict.add_argument(
        "--class",
        dest="class_name",
        help="multiclass: write this class alone (name or index) as a mask or probability",
    )
    predict.add_argument(
        "--csv-columns",
        choices=("img,pixels", "ImageId,EncodedPixels"),
        help="header of an RLE CSV (default from the model: img,pixels)",
    )
    predict.add_argument("--threshold", type=float, help="mask threshold (default from model)")
    predict.add_argument("--tile-size", type=int)
    predict.add_argument("--overlap", type=int)
    predict.add_argument("--batch-size", type=int)
    predict.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_blockwise_arguments(predict)
    predict.add_argument("--unsafe-load", action="store_true", help=UNSAFE_HELP)
    predict.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Predict and write the mask (or ``--probabilities``) to ``--output``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``predict`` command line.

    Returns
    -------
    int
        The exit code (0).
    """
    from ..engine.inference.predict import predict
    from ..engine.io.export import prediction_target
    from ..engine.io.sources import read_predict_images
    from ..engine.io.task_export import check_task_output, npy_channel_layout, write_task_prediction
    from ..engine.model.devices import configure_devices_for_model
    from ..engine.model.model_folder import load_model

    if wants_blockwise(args):  # .zarr output, --blockwise/--scheduler or a large input
        return run_blockwise_predict(args, progress_printer(args.quiet))
    output, _ = prediction_target(args.output, args.probabilities, args.overwrite)
    source = predict_source(args.input)
    configure_devices_for_model(args.model, args.gpu)
    model = load_model(args.model, safe_mode=not getattr(args, "unsafe_load", False))
    task = model.config.model.task
    check_task_output(args.output, task, args.probabilities, args.class_name)
    images, frame_ids = read_predict_images(source, model.config)
    config = predict_config(model, args)
    result = predict(model, images, config, callback=progress_printer(args.quiet))
    count = result.probability.shape[0]
    ids = frame_ids or rle_ids(source, count)  # Kaggle img ids, PNG names: the inputs'
    write_task_prediction(
        args.output,
        result,
        probabilities=args.probabilities,
        class_name=args.class_name,
        ids=ids,
        names=ids if (frame_ids or source.is_dir()) else None,
        csv_columns=args.csv_columns or config.csv_columns,
        channel_axis=npy_channel_layout(source),
        overwrite=args.overwrite,
    )
    if not args.quiet:
        print(f"wrote {output} {result.probability.shape}", file=sys.stderr)
    return 0
