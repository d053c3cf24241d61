"""``napari-unet frames-meta FOLDER``: write ``frames_meta.csv`` for a folder of frames."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "run"]

NAME = "frames-meta"
NEEDS_TENSORFLOW = False


def add_parser(sub: SubParsers) -> None:
    """Add the ``frames-meta`` sub-command to `sub`.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of the ``napari-unet`` parser.
    """
    frames = sub.add_parser(
        NAME, help="write frames_meta.csv for a folder of im_c###_z###_t###_p### frames"
    )
    frames.add_argument("folder", help="folder of frames")


def run(args: argparse.Namespace) -> int:
    """Write ``FOLDER/frames_meta.csv`` and print its path and frame count as JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``frames-meta`` command line.

    Returns
    -------
    int
        The exit code (0).
    """
    from ..engine.io.frames import read_frames_meta, write_frames_meta

    path = write_frames_meta(Path(args.folder))
    print(json.dumps({"frames_meta": str(path), "frames": len(read_frames_meta(path.parent))}))
    return 0
