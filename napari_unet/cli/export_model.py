"""``napari-unet export-model``: a model folder as a bioimage.io package, ONNX, SavedModel
or HDF5 weights (``.weights.h5``, or a legacy ``.h5`` model file).

The same engine call as the dock's Export tab
(:func:`~napari_unet.engine.model.exchange.export_model`); ``--check`` then validates a
bioimage.io package with the ecosystem's own tools (bioimageio.spec, bioimageio.core).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from .common import EXIT_FAULT, UNSAFE_HELP
from .options import abs_path

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run"]

NAME = "export-model"
NEEDS_TENSORFLOW = True


def add_parser(sub: SubParsers) -> None:
    """Add the ``export-model`` sub-command to `sub`."""
    export = sub.add_parser(NAME, help="export a model as bioimage.io package, ONNX or SavedModel")
    export.add_argument("model", help="model folder written by train or finetune")
    export.add_argument(
        "--format", required=True, choices=("bioimageio", "onnx", "savedmodel", "h5"), dest="fmt"
    )
    export.add_argument(
        "--output", "-o", help="file (.zip, .onnx, .weights.h5 or .h5) or folder to write"
    )
    export.add_argument("--name", help="bioimage.io: model name")
    export.add_argument("--author", action="append", help="bioimage.io: an author (repeatable)")
    export.add_argument(
        "--check", action="store_true", help="bioimage.io: validate and test-run the package"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing output")
    export.add_argument("--unsafe-load", action="store_true", help=UNSAFE_HELP)
    export.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Export, print what was written (and the check's verdict) as JSON."""
    from ..engine.model.exchange import (
        BioimageioOptions,
        check_bioimageio_package,
        default_output,
        export_model,
    )

    model = abs_path(args.model)
    output = abs_path(args.output) or str(default_output(model, args.fmt))
    options = None
    if args.fmt == "bioimageio":
        extra = {"name": args.name} if args.name else {}
        if args.author:
            extra["authors"] = tuple(args.author)
        options = BioimageioOptions(**extra)

    def step(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    written = export_model(
        model,
        args.fmt,
        output,
        overwrite=args.overwrite,
        options=options,
        safe_mode=not args.unsafe_load,
        on_step=step,
    )
    report = {"output": str(written), "format": args.fmt}
    code = 0
    if args.check and args.fmt == "bioimageio":
        check = check_bioimageio_package(written)
        report.update(format=check.format_status, test=check.test_status, passed=check.passed)
        if check.problems:
            report["problems"] = list(check.problems)
        code = 0 if check.passed else EXIT_FAULT
    print(json.dumps(report))
    return code
