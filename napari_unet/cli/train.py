"""``napari-unet train``: train a U-Net and write a model folder."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from .common import EXIT_FAULT
from .options import abs_path, data_overrides, with_overrides
from .progress import progress_printer

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run"]

NAME = "train"
NEEDS_TENSORFLOW = True


def add_parser(sub: SubParsers) -> None:
    """Add the ``train`` sub-command to `sub`.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of the ``napari-unet`` parser.
    """
    train = sub.add_parser(NAME, help="train a U-Net and write a model folder")
    train.add_argument("config", nargs="?", help="YAML config (defaults apply without one)")
    train.add_argument("--images", help="image stack, image or folder of slices")
    train.add_argument("--masks", help="masks matching --images")
    train.add_argument("--val-images", help="validation images (else a split of --images)")
    train.add_argument("--val-masks", help="validation masks")
    train.add_argument("--output", "-o", help="model folder to write")
    train.add_argument("--max-minutes", type=float, help="wall-clock training budget")
    train.add_argument("--epochs", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--patch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--preset", help="model preset (cpu-small, cpu, gpu, gpu-large)")
    train.add_argument("--init-from", help="warm-start from this model folder (fine-tuning)")
    train.add_argument(
        "--freeze-batch-norm",
        action="store_true",
        help="keep batch-norm statistics fixed (recommended with --init-from on a few slices)",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--dataset", help="dataset root with train/images and train/masks")
    train.add_argument("--gpu", type=int, help="GPU index to use")
    train.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    """Train, print the model folder and stop reason as JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``train`` command line.

    Returns
    -------
    int
        0, or :data:`~napari_unet.cli.common.EXIT_FAULT` if a fault (NaN loss, out
        of memory) ended training; the checkpoints written so far are kept.
    """
    from ..engine.config import Config, load_config
    from ..engine.training.train import train

    config = load_config(args.config) if args.config else Config()
    overrides = {
        **data_overrides(args),
        "output": abs_path(args.output),
        "train.max_minutes": args.max_minutes,
        "train.epochs": args.epochs,
        "train.steps_per_epoch": args.steps_per_epoch,
        "train.batch_size": args.batch_size,
        "train.patch_size": args.patch_size,
        "train.learning_rate": args.learning_rate,
        "train.init_from": abs_path(args.init_from),
        "train.seed": args.seed,
        "train.freeze_batch_norm": True if args.freeze_batch_norm else None,
    }
    if args.preset:
        overrides["model"] = {"preset": args.preset}
    config = with_overrides(config, overrides)
    stop = threading.Event()
    result = train(config, callback=progress_printer(args.quiet), stop=stop)
    print(json.dumps({"model_dir": str(result.model_dir), "stopped": result.stopped_reason}))
    if getattr(result, "failed", False):  # a fault ended training; checkpoints are kept
        print(f"napari-unet: error: training stopped: {result.stopped_reason}", file=sys.stderr)
        return EXIT_FAULT
    return 0
