"""``napari-unet augment``: write augmented training patches as image/mask pairs.

The patches come from the training stream itself (the config's data, sampling and
augmentation, seeded by ``train.seed``), so they show exactly what training sees:
``DIR/0000.tif`` and ``DIR/0000_mask.tif``, ... (see
:mod:`~napari_unet.engine.data.augment_export`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from .options import abs_path, data_overrides, with_overrides

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run"]

NAME = "augment"
NEEDS_TENSORFLOW = True


def add_parser(sub: SubParsers) -> None:
    """Add the ``augment`` sub-command to `sub`.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of the ``napari-unet`` parser.
    """
    augment = sub.add_parser(NAME, help="write augmented training patches as image/mask pairs")
    augment.add_argument("config", nargs="?", help="YAML config (defaults apply without one)")
    augment.add_argument("--samples", type=int, default=16, help="number of patches (16)")
    augment.add_argument("--output", "-o", required=True, help="folder to write")
    augment.add_argument("--images", help="image stack, image or folder of slices")
    augment.add_argument("--masks", help="masks matching --images")
    augment.add_argument("--dataset", help="dataset root with train/images and train/masks")
    augment.add_argument("--patch-size", type=int, help="patch side (train.patch_size)")
    augment.add_argument("--seed", type=int, help="train.seed")
    augment.add_argument("--format", choices=("tif", "png"), default="tif", dest="fmt")
    augment.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    augment.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Write the patches and print what was written as JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``augment`` command line.

    Returns
    -------
    int
        The exit code (0).
    """
    from ..engine.atomic import check_writable
    from ..engine.config import Config, load_config
    from ..engine.data.augment_export import augmented_samples, write_augmented

    config = load_config(args.config) if args.config else Config()
    overrides = {
        **data_overrides(args),
        "train.patch_size": args.patch_size,
        "train.seed": args.seed,
    }
    config = with_overrides(config, overrides)
    output = abs_path(args.output)
    check_writable(output, overwrite=args.overwrite)
    samples = augmented_samples(config, args.samples)
    written = write_augmented(output, samples, config.model.task, args.fmt, args.overwrite)
    if not args.quiet:
        print(f"wrote {len(written)} image/mask pairs to {output}", file=sys.stderr)
    print(json.dumps({"output": output, "samples": len(written), "format": args.fmt}))
    return 0
