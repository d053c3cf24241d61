"""``napari-unet finetune``: fine-tune a model on corrected slices, as the dock does.

The same engine call as the dock's *Correct & retrain* tab
(:func:`~napari_unet.engine.training.finetune.finetune_iter`): the parent's whole recipe,
its own data replayed, batch norm frozen, the threshold chosen on held-back corrections,
a new model version written. ``napari-unet train --init-from`` goes through
:func:`run_finetune` too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import EXIT_FAULT, EXIT_INTERRUPTED, PROCESS_STARTED, stop_on_interrupt
from .options import abs_path
from .progress import progress_printer

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "parse_slices", "run", "run_finetune"]

NAME = "finetune"
NEEDS_TENSORFLOW = True
MASK_KINDS = ("auto", "binary", "sparse", "instances")


def add_parser(sub: SubParsers) -> None:
    """Add the ``finetune`` sub-command to `sub`."""
    finetune = sub.add_parser(
        NAME, help="fine-tune a model on corrected slices and write a new version"
    )
    finetune.add_argument("model", help="model folder to start from")
    finetune.add_argument("--images", required=True, help="the image stack that was corrected")
    finetune.add_argument("--masks", required=True, help="the corrections (same shape)")
    finetune.add_argument(
        "--slices", help="corrected slice indices, e.g. 0,5 (default: slices with labels)"
    )
    finetune.add_argument("--output", "-o", help="new model folder (default: next version)")
    finetune.add_argument(
        "--max-minutes", type=float, default=5.0, help="wall-clock budget, all included"
    )
    finetune.add_argument("--max-cpu-minutes", type=float, help="CPU-time budget of the batches")
    finetune.add_argument(
        "--mask-kind", choices=MASK_KINDS, default="auto", help="what the mask values mean"
    )
    finetune.add_argument("--learning-rate", type=float, help="absolute learning rate")
    finetune.add_argument("--overwrite", action="store_true", help="replace an existing output")
    finetune.add_argument("--gpu", type=int, help="GPU index to use")
    finetune.add_argument("--quiet", action="store_true", help="no progress output")


def parse_slices(text: str | None) -> list[int] | None:
    """``"0,5,7"`` -> [0, 5, 7]; None stays None (a clear error for anything else)."""
    if not text:
        return None
    from ..engine.errors import UserInputError

    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UserInputError(
            f"--slices takes comma-separated slice indices, got {text!r}"
        ) from None


def run_finetune(
    parent: str,
    images: str,
    masks: str,
    slices: list[int] | None,
    output: str | None,
    max_minutes: float | None,
    quiet: bool,
    mask_kind: str = "auto",
    max_cpu_minutes: float | None = None,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> int:
    """Read the stacks, fine-tune through the engine, print the new version as JSON.

    The first Ctrl-C stops the training within one batch and still completes the
    version (exit code 130); a second one aborts without writing it."""
    from ..engine.io.stacks import read_stack
    from ..engine.training.finetune import finetune

    with stop_on_interrupt() as interrupt:
        result = finetune(
            Path(parent),
            read_stack(images),
            read_stack(masks),
            slices=slices,
            output=abs_path(output),
            max_minutes=max_minutes,
            max_cpu_minutes=max_cpu_minutes,
            stop=interrupt.event,
            mask_kind=mask_kind,
            overrides=overrides,
            started=PROCESS_STARTED,
            overwrite=overwrite,
            callback=progress_printer(quiet),
        )
    print(json.dumps({"model_dir": str(result.model_dir), "stopped": result.stopped_reason}))
    if getattr(result, "failed", False):
        print(f"napari-unet: error: fine-tuning stopped: {result.stopped_reason}", file=sys.stderr)
        return EXIT_FAULT
    return EXIT_INTERRUPTED if interrupt.requested else 0


def run(args: argparse.Namespace) -> int:
    """Fine-tune ``args.model`` on the corrections."""
    overrides = {
        "train.learning_rate": args.learning_rate,
        "train.device.gpu": args.gpu,
    }
    return run_finetune(
        abs_path(args.model),
        abs_path(args.images),
        abs_path(args.masks),
        parse_slices(args.slices),
        args.output,
        args.max_minutes,
        args.quiet,
        mask_kind=args.mask_kind,
        max_cpu_minutes=args.max_cpu_minutes,
        overrides={k: v for k, v in overrides.items() if v is not None},
        overwrite=args.overwrite,
    )
