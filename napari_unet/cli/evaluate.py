"""``napari-unet evaluate``: print a model's metrics on labelled data as JSON."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .common import UNSAFE_HELP
from .options import predict_config

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run"]

NAME = "evaluate"
NEEDS_TENSORFLOW = True


def add_parser(sub: SubParsers) -> None:
    """Add the ``evaluate`` sub-command to `sub`.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of the ``napari-unet`` parser.
    """
    evaluate = sub.add_parser(NAME, help="print a model's metrics on labelled data as JSON")
    evaluate.add_argument("model", help="model folder")
    evaluate.add_argument("images", help="image stack")
    evaluate.add_argument("masks", help="ground-truth masks")
    evaluate.add_argument("--threshold", type=float)
    evaluate.add_argument("--tta", action="store_true")
    evaluate.add_argument("--per-slice", action="store_true", help="include per-slice metrics")
    evaluate.add_argument("--unsafe-load", action="store_true", help=UNSAFE_HELP)


def run(args: argparse.Namespace) -> int:
    """Predict the images and print the metrics against the masks as JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``evaluate`` command line.

    Returns
    -------
    int
        The exit code (0).
    """
    from ..engine.data.preprocess import as_stack
    from ..engine.evaluation.metrics import evaluate
    from ..engine.inference.predict import predict
    from ..engine.io.stacks import check_pair, read_mask, read_stack
    from ..engine.model.model_folder import load_model

    images = as_stack(read_stack(args.images))
    masks = as_stack(read_mask(args.masks))
    check_pair(images, masks, "images", "masks")
    model = load_model(args.model, safe_mode=not getattr(args, "unsafe_load", False))
    config = predict_config(model, args)
    result = predict(model, images, config)
    scores = evaluate(result.probability, masks, threshold=config.threshold)
    if not args.per_slice:
        scores = {k: v for k, v in scores.items() if k != "per_slice"}
    print(json.dumps(scores, indent=2, default=float))
    return 0
