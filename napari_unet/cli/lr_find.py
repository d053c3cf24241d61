"""``napari-unet lr-find``: learning-rate range test; suggested rates as JSON, a PNG plot."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .options import abs_path, data_overrides, with_overrides

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run"]

NAME = "lr-find"
NEEDS_TENSORFLOW = True


def add_parser(sub: SubParsers) -> None:
    """Add the ``lr-find`` sub-command to `sub`.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of the ``napari-unet`` parser.
    """
    lr = sub.add_parser(
        NAME,
        help="learning-rate range test: print suggested base/max rates as JSON, plot a PNG",
    )
    lr.add_argument("config", nargs="?", help="YAML config (defaults apply without one)")
    lr.add_argument("--images", help="image stack, image or folder of slices")
    lr.add_argument("--masks", help="masks matching --images")
    lr.add_argument("--dataset", help="dataset root with train/images and train/masks")
    lr.add_argument("--output", "-o", help="folder for lr_find.png and lr_find.json")
    lr.add_argument("--min-lr", type=float, default=1e-6, help="first rate (default 1e-6)")
    lr.add_argument("--max-lr", type=float, default=1.0, help="last rate (default 1)")
    lr.add_argument("--steps", type=int, default=100, help="batches, one per rate (default 100)")
    lr.add_argument("--batch-size", type=int)
    lr.add_argument("--patch-size", type=int)
    lr.add_argument("--preset", help="model preset (cpu-small, cpu, gpu, gpu-large)")
    lr.add_argument("--gpu", type=int, help="GPU index to use")
    lr.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    """Run the range test and print the suggestion as JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``lr-find`` command line.

    Returns
    -------
    int
        The exit code (0).
    """
    from ..engine.config import Config, load_config
    from ..engine.training.lr_finder import LRFindEvent, lr_find, result_json

    config = load_config(args.config) if args.config else Config()
    overrides = {
        **data_overrides(args),
        "output": abs_path(args.output),
        "train.batch_size": args.batch_size,
        "train.patch_size": args.patch_size,
    }
    if args.preset:
        overrides["model"] = {"preset": args.preset}
    config = with_overrides(config, overrides)

    def show(event: LRFindEvent) -> None:
        if args.quiet:
            return
        if event.kind == "step" and sys.stderr.isatty():
            print(
                f"\rstep {event.step}/{event.total_steps} lr {event.learning_rate:.2e} "
                f"loss {event.smoothed_loss:.4f}   ",
                end="",
                file=sys.stderr,
            )
        elif event.kind in ("done", "stopped"):
            print(f"\rLR range test ended: {event.message}", file=sys.stderr)

    result = lr_find(
        config,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        steps=args.steps,
        output=config.output,
        callback=show,
    )
    print(result_json(result))
    return 0
