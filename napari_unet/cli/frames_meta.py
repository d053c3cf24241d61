"""``napari-unet frames-meta FOLDER``: write a ``frames_meta.csv`` for a folder of frames.

The input folder is only read: by default the CSV goes to
``./<FOLDER name>_frames_meta.csv`` (or ``--output``, a file or a folder to put it
in); ``--in-folder`` writes ``FOLDER/frames_meta.csv``, where training with
``data.frames`` reads it. An existing CSV is replaced only with ``--overwrite``,
and then keeps its extra columns (see
:func:`~napari_unet.engine.io.frames.write_frames_meta`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["NAME", "NEEDS_TENSORFLOW", "add_parser", "default_target", "run"]

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
    frames.add_argument("folder", help="folder of frames (only read)")
    frames.add_argument(
        "--output",
        "-o",
        help="CSV to write, or a folder to write <FOLDER name>_frames_meta.csv into "
        "(default: ./<FOLDER name>_frames_meta.csv)",
    )
    frames.add_argument(
        "--in-folder",
        action="store_true",
        help="write FOLDER/frames_meta.csv inside the input folder (where training reads it)",
    )
    frames.add_argument(
        "--overwrite", action="store_true", help="update an existing CSV (its extra columns kept)"
    )


def default_target(folder: Path, output: str | None, in_folder: bool) -> Path:
    """Where the CSV goes: ``FOLDER/frames_meta.csv`` with `in_folder`, else `output` (a
    folder gets ``<FOLDER name>_frames_meta.csv``), else that name in the current folder.

    Raises
    ------
    UserInputError
        If `output` and `in_folder` are both given, or `output` lies inside `folder`
        without `in_folder`.
    """
    from ..engine.errors import UserInputError
    from ..engine.io.frames import FRAMES_META

    name = f"{folder.resolve().name or 'frames'}_{FRAMES_META}"
    if in_folder:
        if output:
            raise UserInputError("give either --output or --in-folder, not both")
        return folder / FRAMES_META
    if not output:
        return Path.cwd() / name
    target = Path(output).expanduser()
    if output.endswith(("/", "\\")) or target.is_dir():
        target = target / name
    if folder.resolve() in target.resolve().parents:
        raise UserInputError(
            f"{target} is inside the input folder {folder}; pass --in-folder to write there"
        )
    return target


def run(args: argparse.Namespace) -> int:
    """Write the CSV and print its path and frame count as JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``frames-meta`` command line.

    Returns
    -------
    int
        The exit code (0).
    """
    from ..engine.io.frames import read_frames_meta, scan_frames, write_frames_meta

    folder = Path(args.folder).expanduser()
    scan_frames(folder)  # a missing folder is reported before anything else
    target = default_target(folder, args.output, args.in_folder)
    path = write_frames_meta(folder, overwrite=args.overwrite, target=target)
    frames = read_frames_meta(folder, meta=path)
    print(json.dumps({"frames_meta": str(path), "frames": len(frames)}))
    return 0
