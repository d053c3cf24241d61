"""Command-line pieces for the features carried over from the original U-Net projects.

``napari-unet lr-find`` (learning-rate range test), ``napari-unet frames-meta``
(write ``frames_meta.csv``), the ``--dataset ROOT`` and ``--gpu N`` options of
``train``, and how ``predict`` names its inputs and outputs (dataset roots,
``.tif``/``.npy``/``.csv``/PNG-folder outputs). :mod:`napari_unet.cli.main` wires
them in; TensorFlow is imported only by the commands that train.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "FEATURE_COMMANDS",
    "add_feature_parsers",
    "cmd_frames_meta",
    "cmd_lr_find",
    "data_overrides",
    "predict_source",
    "rle_ids",
]


def add_feature_parsers(sub: Any) -> None:
    """Add the ``lr-find`` and ``frames-meta`` sub-commands to `sub`."""
    lr = sub.add_parser(
        "lr-find",
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

    frames = sub.add_parser(
        "frames-meta", help="write frames_meta.csv for a folder of im_c###_z###_t###_p### frames"
    )
    frames.add_argument("folder", help="folder of frames")


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides of the data flags (``--images`` ... ``--dataset``, ``--gpu``).

    ``--dataset ROOT`` fills images, masks (and validation data when the root has
    ``val/``) from the layout, unless the matching flag is given too.
    """
    from .main import _abs

    overrides: dict[str, Any] = {
        "data.images": _abs(getattr(args, "images", None)),
        "data.masks": _abs(getattr(args, "masks", None)),
        "data.val_images": _abs(getattr(args, "val_images", None)),
        "data.val_masks": _abs(getattr(args, "val_masks", None)),
        "train.device.gpu": getattr(args, "gpu", None),
    }
    dataset = getattr(args, "dataset", None)
    if dataset:
        from ..engine.io.sources import layout_sources

        for key, value in layout_sources(_abs(dataset)).items():
            if overrides[f"data.{key}"] is None:
                overrides[f"data.{key}"] = value
    return overrides


def predict_source(path: str) -> Path:
    """The images ``predict`` reads: a dataset root's ``test/images``, else `path`."""
    from ..engine.io.sources import predict_input

    return predict_input(path)


def rle_ids(source: Path, count: int) -> list[str]:
    """``ImageId`` of each predicted slice for an RLE CSV.

    A folder of slices gives its file names without suffix; a single image its
    name; a stack ``<name>_<z>``.
    """
    from ..engine.io.stacks import list_image_files

    if source.is_dir():
        stems = [p.stem for p in list_image_files(source)]
        if len(stems) == count:
            return stems
    if count == 1:
        return [source.stem]
    return [f"{source.stem}_{z}" for z in range(count)]


def cmd_lr_find(args: argparse.Namespace) -> int:
    """``napari-unet lr-find``: run the range test and print the suggestion as JSON."""
    from ..engine.config import Config, load_config
    from ..engine.training.lr_finder import LRFindEvent, lr_find, result_json
    from .main import _abs, _with_overrides

    config = load_config(args.config) if args.config else Config()
    overrides = {
        **data_overrides(args),
        "output": _abs(args.output),
        "train.batch_size": args.batch_size,
        "train.patch_size": args.patch_size,
    }
    if args.preset:
        overrides["model"] = {"preset": args.preset}
    config = _with_overrides(config, overrides)

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


def cmd_frames_meta(args: argparse.Namespace) -> int:
    """``napari-unet frames-meta FOLDER``: write ``FOLDER/frames_meta.csv``."""
    from ..engine.io.frames import read_frames_meta, write_frames_meta

    path = write_frames_meta(Path(args.folder))
    print(json.dumps({"frames_meta": str(path), "frames": len(read_frames_meta(path.parent))}))
    return 0


#: Sub-commands added by this module and their handlers.
FEATURE_COMMANDS = {"lr-find": cmd_lr_find, "frames-meta": cmd_frames_meta}
