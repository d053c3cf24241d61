"""``napari-unet evaluate``: print a model's metrics on labelled data as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    model = load_model(args.model, safe_mode=not getattr(args, "unsafe_load", False))
    config = predict_config(model, args)
    if model.config.model.task != "binary":  # class indices or a float target
        return _evaluate_task(args, model, config)
    images = as_stack(read_stack(args.images))
    masks = as_stack(read_mask(args.masks))
    check_pair(images, masks, "images", "masks")
    result = predict(model, images, config)
    scores = evaluate(result.probability, masks, threshold=config.threshold)
    if not args.per_slice:
        scores = {k: v for k, v in scores.items() if k != "per_slice"}
    print(json.dumps(scores, indent=2, default=float))
    return 0


def _evaluate_task(args: argparse.Namespace, model: Any, config: Any) -> int:
    """Multiclass (per-class Dice/IoU, pixel accuracy) or regression (MAE, MSE, PSNR,
    SSIM, Pearson against the target normalized as in training) scores as JSON."""
    from ..engine.data.preprocess import as_stack
    from ..engine.data.task_data import normalize_target
    from ..engine.evaluation.task_scores import score_task
    from ..engine.inference.predict import predict
    from ..engine.io.sources import read_predict_images
    from ..engine.io.stacks import read_stack

    images, _ = read_predict_images(Path(args.images), model.config)
    truth = as_stack(read_stack(args.masks))
    result = predict(model, images, config)
    if model.config.model.task == "regression":
        data = model.config.data
        truth, _ = normalize_target(truth, data.target_normalization, data.percentiles)
    scores = score_task(result.probability, truth, model.config)
    print(json.dumps(scores, indent=2, default=float))
    return 0
