"""Command line: ``napari-unet train | finetune | predict | evaluate | demo | lr-find | ...``.

The CLI reads the same YAML config as the napari widgets; flags override it.
A user error prints one line on stderr and exits with code 2, never a
traceback. TensorFlow is imported only by the commands that need it.

Each command lives in its own module (:mod:`~napari_unet.cli.train`,
:mod:`~napari_unet.cli.predict`, ...) with ``NAME``, ``NEEDS_TENSORFLOW``,
``add_parser(sub)`` and ``run(args)``; this module builds the parser from them
and dispatches through :func:`~napari_unet.cli.common.run_command`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import (
    augment,
    demo,
    evaluate,
    export_model,
    finetune,
    frames_meta,
    lr_find,
    predict,
    train,
)
from .common import EXIT_FAULT, EXIT_USER_ERROR, CommandHandler, Parser, run_command

__all__ = [
    "COMMANDS",
    "EXIT_FAULT",
    "EXIT_USER_ERROR",
    "NEEDS_TENSORFLOW",
    "build_parser",
    "main",
]

#: The command modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    train,
    finetune,
    predict,
    evaluate,
    export_model,
    demo,
    lr_find,
    frames_meta,
    augment,
)

#: Sub-command name to its handler.
COMMANDS: dict[str, CommandHandler] = {m.NAME: m.run for m in COMMAND_MODULES}

#: Sub-commands that import TensorFlow (quietly) before they run.
NEEDS_TENSORFLOW = {m.NAME for m in COMMAND_MODULES if m.NEEDS_TENSORFLOW}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-unet`` console script.

    Returns
    -------
    argparse.ArgumentParser
        The parser with one sub-parser per command; usage errors print one line
        and exit with code 2.
    """
    parser = Parser(prog="napari-unet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-unet`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` if ``None``.

    Returns
    -------
    int
        The exit code: 0, 2 for a user error, 1 for a fault, 130 for Ctrl-C.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already reported
        return int(exit_request.code or 0)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return EXIT_USER_ERROR
    return run_command(
        COMMANDS[args.command], args, needs_tensorflow=args.command in NEEDS_TENSORFLOW
    )


if __name__ == "__main__":
    sys.exit(main())
