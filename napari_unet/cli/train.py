"""``napari-unet train``: train a U-Net and write a model folder."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from .common import EXIT_FAULT, EXIT_INTERRUPTED, stop_on_interrupt
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
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an --output folder that already holds a model (it is replaced)",
    )
    train.add_argument("--max-minutes", type=float, help="wall-clock training budget")
    train.add_argument("--epochs", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--patch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--preset", help="model preset (cpu-small, cpu, gpu, gpu-large)")
    train.add_argument(
        "--init-from",
        help="fine-tune this model folder on --images/--masks (the same path as "
        "`napari-unet finetune`: its recipe, its data replayed, batch norm frozen); "
        "or warm-start the config's network from a .weights.h5/.h5 file",
    )
    train.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), help="train.optimizer")
    train.add_argument("--log-dir", help="TensorBoard folder (train.log_dir)")
    train.add_argument(
        "--freeze-batch-norm",
        action="store_true",
        help="keep batch-norm statistics fixed (always on with --init-from)",
    )
    train.add_argument("--slices", help="with --init-from: corrected slice indices, e.g. 0,5")
    train.add_argument(
        "--mask-kind",
        choices=("auto", "binary", "sparse", "instances"),
        help="what the mask values mean (data.mask_kind)",
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
        0; :data:`~napari_unet.cli.common.EXIT_FAULT` if a fault (NaN loss, out of
        memory) ended training (the checkpoints written so far are kept);
        :data:`~napari_unet.cli.common.EXIT_INTERRUPTED` after Ctrl-C stopped it
        cleanly (the model folder is complete and loadable).
    """
    from ..engine.config import Config, load_config
    from ..engine.model.weights_io import is_weights_file
    from ..engine.training.train import train

    if args.init_from and not is_weights_file(args.init_from):  # a model folder: fine-tune
        return _finetune_from(args)
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
        "data.mask_kind": args.mask_kind,
        "train.optimizer": args.optimizer,
        "train.log_dir": abs_path(args.log_dir),
    }
    if args.preset:
        overrides["model"] = {"preset": args.preset}
    config = with_overrides(config, overrides)
    with stop_on_interrupt() as interrupt:
        result = train(
            config,
            callback=progress_printer(args.quiet),
            stop=interrupt.event,
            overwrite=args.overwrite,
        )
    summary = {"model_dir": str(result.model_dir), "stopped": result.stopped_reason}
    if getattr(result, "test_metrics", None):  # data.split.test scored with the best model
        summary["test"] = result.test_metrics
        if not args.quiet:
            shown = ", ".join(
                f"{k} {v:.4f}" for k, v in result.test_metrics.items() if isinstance(v, float)
            )
            print(f"test slices: {shown}", file=sys.stderr)
    print(json.dumps(summary, default=float))
    if getattr(result, "failed", False):  # a fault ended training; checkpoints are kept
        print(f"napari-unet: error: training stopped: {result.stopped_reason}", file=sys.stderr)
        return EXIT_FAULT
    return EXIT_INTERRUPTED if interrupt.requested else 0


def _finetune_from(args: argparse.Namespace) -> int:
    """``train --init-from MODEL``: the fine-tuning path of ``napari-unet finetune``, with
    the training flags given (epochs, patch size, ...) applied on top of the parent's recipe."""
    from ..engine.config import load_config
    from ..engine.errors import UserInputError
    from .finetune import parse_slices, run_finetune

    config = load_config(args.config) if args.config else None
    images = abs_path(args.images) or (config.data.images if config else None)
    masks = abs_path(args.masks) or (config.data.masks if config else None)
    if not (images and masks):
        raise UserInputError("train --init-from needs --images and --masks (the corrections)")
    overrides = {
        "train.epochs": args.epochs,
        "train.steps_per_epoch": args.steps_per_epoch,
        "train.batch_size": args.batch_size,
        "train.patch_size": args.patch_size,
        "train.learning_rate": args.learning_rate,
        "train.seed": args.seed,
        "train.device.gpu": args.gpu,
    }
    max_minutes = args.max_minutes
    if max_minutes is None and config is not None:
        max_minutes = config.train.max_minutes
    if max_minutes is None and args.epochs is None:
        max_minutes = 5.0  # as `napari-unet finetune`: a bounded fine-tuning
    return run_finetune(
        abs_path(args.init_from),
        images,
        masks,
        parse_slices(args.slices),
        args.output or (config.output if config else None),
        max_minutes,
        args.quiet,
        mask_kind=args.mask_kind or "auto",
        overrides={k: v for k, v in overrides.items() if v is not None},
        overwrite=args.overwrite,
    )
