"""The frames layout: a folder of 2D frames with a ``frames_meta.csv`` (as in microDL).

Each file holds one 2D frame named ``im_c###_z###_t###_p###.png`` (channel,
slice, time and position indices; ``.tif``/``.tiff`` frames work too).
``frames_meta.csv`` lists them with the columns ``channel_idx, slice_idx,
time_idx, pos_idx, file_name``; :func:`write_frames_meta` writes it for a
folder. A :class:`~napari_unet.engine.config.FramesConfig` selects the image
channels, slices, times and positions and the channel holding the masks;
:func:`load_frame_pair` turns the selection into ``(Z, Y, X)`` image and mask
stacks (one slice per selected image frame, its mask the frame of
``mask_channel`` at the same slice, time and position).

No TensorFlow.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..errors import UserInputError

__all__ = [
    "FRAMES_META",
    "META_COLUMNS",
    "Frame",
    "frame_name",
    "load_frame_pair",
    "parse_frame_name",
    "read_frames_meta",
    "scan_frames",
    "select_frames",
    "write_frames_meta",
]

#: Name of the metadata file in a frames folder.
FRAMES_META = "frames_meta.csv"
#: Its columns, in order.
META_COLUMNS = ("channel_idx", "slice_idx", "time_idx", "pos_idx", "file_name")
_FRAME_RE = re.compile(r"^im_c(\d+)_z(\d+)_t(\d+)_p(\d+)\.(png|tif|tiff)$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Frame:
    """One 2D frame of the folder (sorted by position, time, slice, channel)."""

    position: int
    time: int
    slice: int
    channel: int
    file_name: str


def frame_name(channel: int, slice: int, time: int, position: int, ext: str = "png") -> str:
    """``im_c{channel:03d}_z{slice:03d}_t{time:03d}_p{position:03d}.{ext}``."""
    return f"im_c{channel:03d}_z{slice:03d}_t{time:03d}_p{position:03d}.{ext}"


def parse_frame_name(name: str) -> Frame | None:
    """The frame a file name describes, or None if it does not follow the pattern."""
    match = _FRAME_RE.match(name)
    if match is None:
        return None
    c, z, t, p = (int(g) for g in match.groups()[:4])
    return Frame(position=p, time=t, slice=z, channel=c, file_name=name)


def scan_frames(folder: str | Path) -> list[Frame]:
    """Frames named ``im_c###_z###_t###_p###`` directly in `folder`, sorted."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserInputError(f"frames folder {folder} does not exist or is not a folder")
    frames = [parse_frame_name(p.name) for p in folder.iterdir() if p.is_file()]
    return sorted(f for f in frames if f is not None)


def write_frames_meta(
    folder: str | Path, overwrite: bool = True, target: str | Path | None = None
) -> Path:
    """Write a ``frames_meta.csv`` listing the frames of `folder` (atomically).

    An existing CSV at `target` is updated, never thinned: its extra columns (microDL
    writes e.g. ``channel_name``) and their values are kept for every frame still in
    the folder (new frames get empty values); rows of frames no longer there are
    dropped.

    Parameters
    ----------
    folder
        The frames folder (only read).
    overwrite
        Update an existing `target`; False: an existing `target` is an error.
    target
        Where to write; default ``folder/frames_meta.csv`` (where
        :func:`read_frames_meta` looks).

    Returns
    -------
    pathlib.Path
        The written CSV.

    Raises
    ------
    UserInputError
        If the folder holds no ``im_c###_z###_t###_p###`` frames, or an existing
        `target` cannot be read as a CSV with a ``file_name`` column.
    """
    folder = Path(folder).expanduser()
    frames = scan_frames(folder)
    if not frames:
        raise UserInputError(f"{folder} holds no frames named im_c###_z###_t###_p###.png (or .tif)")
    target = Path(target).expanduser() if target is not None else folder / FRAMES_META
    extra, kept = _existing_extra_columns(target) if overwrite else ([], {})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((*META_COLUMNS, *extra))
    for f in frames:
        values = kept.get(f.file_name, {})
        row = (f.channel, f.slice, f.time, f.position, f.file_name)
        writer.writerow((*row, *(values.get(c, "") for c in extra)))
    atomic_write_text(target, buffer.getvalue(), overwrite=overwrite)
    return target


def _existing_extra_columns(target: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The columns of an existing CSV beyond :data:`META_COLUMNS`, and their values per
    ``file_name`` (nothing if there is no such file)."""
    if not target.is_file():
        return [], {}
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot update {target}: it is not a readable CSV ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = [c for c in (reader.fieldnames or []) if c is not None]
    if "file_name" not in fields:
        raise UserInputError(
            f"cannot update {target}: it has no file_name column, so its other columns "
            "could not be kept; choose another output"
        )
    extra = [c for c in fields if c not in META_COLUMNS]
    kept = {str(row.get("file_name") or "").strip(): row for row in reader}
    return extra, kept


def read_frames_meta(folder: str | Path, meta: str | Path | None = None) -> list[Frame]:
    """The frames listed in ``folder/frames_meta.csv`` (or the CSV `meta`), sorted.

    Without the file the folder's frame names are scanned instead. Extra columns
    (microDL writes e.g. ``channel_name``) are ignored.

    Raises
    ------
    UserInputError
        If the CSV lacks a column or holds a non-integer index.
    """
    folder = Path(folder).expanduser()
    meta = Path(meta).expanduser() if meta is not None else folder / FRAMES_META
    if not meta.exists():
        return scan_frames(folder)
    try:
        text = meta.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"cannot read {meta}: {exc.strerror or exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in META_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserInputError(f"{meta} lacks the column(s) {', '.join(missing)}")
    frames = []
    for line, row in enumerate(reader, start=2):
        try:
            frames.append(
                Frame(
                    position=int(row["pos_idx"]),
                    time=int(row["time_idx"]),
                    slice=int(row["slice_idx"]),
                    channel=int(row["channel_idx"]),
                    file_name=row["file_name"].strip(),
                )
            )
        except (TypeError, ValueError):
            raise UserInputError(f"{meta} line {line}: indices must be integers") from None
    return sorted(frames)


def _keep(value: int, allowed: Iterable[int] | None) -> bool:
    return allowed is None or value in set(allowed)


def select_frames(
    frames: Sequence[Frame],
    channels: Iterable[int] | None = None,
    slices: Iterable[int] | None = None,
    times: Iterable[int] | None = None,
    positions: Iterable[int] | None = None,
) -> list[Frame]:
    """Frames whose indices are in the given lists (None = any), ordered by
    channel, then position, time and slice."""
    chosen = [
        f
        for f in frames
        if _keep(f.channel, channels)
        and _keep(f.slice, slices)
        and _keep(f.time, times)
        and _keep(f.position, positions)
    ]
    return sorted(chosen, key=lambda f: (f.channel, f.position, f.time, f.slice))


def _read_frames(folder: Path, frames: Sequence[Frame]) -> np.ndarray:
    from .stacks import read_stack

    planes = []
    for f in frames:
        plane = read_stack(folder / f.file_name)
        if plane.shape[0] != 1:
            raise UserInputError(f"frame {f.file_name} holds {plane.shape[0]} slices, not one")
        if planes and plane.shape != planes[0].shape:
            raise UserInputError(
                f"frame {f.file_name} is {plane.shape[1]}x{plane.shape[2]} but "
                f"{frames[0].file_name} is {planes[0].shape[1]}x{planes[0].shape[2]}"
            )
        planes.append(plane)
    return np.concatenate(planes, axis=0)


def _channel_groups(frames: Sequence[Frame], chosen: list[Frame], channels: list[int]):
    """The chosen frames grouped per (position, time, slice), one frame per channel.

    Returns
    -------
    list of list of Frame
        Per slice, its frames in the order of `channels`; the first is the slice's frame.

    Raises
    ------
    UserInputError
        If a slice lacks one of the channels.
    """
    by_key = {(f.channel, f.slice, f.time, f.position): f for f in frames}
    firsts = [f for f in chosen if f.channel == channels[0]]
    groups = []
    for first in firsts:
        group = []
        for channel in channels:
            frame = by_key.get((channel, first.slice, first.time, first.position))
            if frame is None:
                raise UserInputError(
                    f"no frame of channel {channel} beside {first.file_name} (slice "
                    f"{first.slice}, time {first.time}, position {first.position})"
                )
            group.append(frame)
        groups.append(group)
    return groups


def load_frame_pair(
    folder: str | Path, config: Any, need_masks: bool = True, as_channels: bool = False
) -> tuple[np.ndarray, np.ndarray | None, list[Frame]]:
    """Read the frames a ``FramesConfig`` selects.

    Parameters
    ----------
    folder
        The frames folder.
    config
        :class:`~napari_unet.engine.config.FramesConfig`.
    need_masks
        Require ``mask_channel`` and a mask frame for every image frame.
    as_channels
        The frames of ``config.channels`` at one slice, time and position are the
        channels of one image (``(Z, C, Y, X)``) instead of slices of their own (see
        :func:`~napari_unet.engine.io.sources.frames_as_channels`).

    Returns
    -------
    images, masks, frames
        ``(Z, Y, X)`` images (``(Z, C, Y, X)`` with `as_channels`), masks ``(Z, Y, X)``
        (None without ``mask_channel``) and the image frames in slice order (with
        `as_channels`, the frame of the first channel of each slice).
    """
    folder = Path(folder).expanduser()
    frames = read_frames_meta(folder)
    chosen = select_frames(frames, config.channels, config.slices, config.times, config.positions)
    if config.mask_channel is not None:
        chosen = [f for f in chosen if f.channel != config.mask_channel]
    if not chosen:
        raise UserInputError(
            f"no frames in {folder} match channels {config.channels}, slices "
            f"{config.slices}, times {config.times}, positions {config.positions}"
        )
    if as_channels:
        channels = [c for c in config.channels if c != config.mask_channel]
        groups = _channel_groups(frames, chosen, channels)
        planes = [_read_frames(folder, [g[c] for g in groups]) for c in range(len(channels))]
        images = np.stack(planes, axis=1)
        chosen = [g[0] for g in groups]
    else:
        images = _read_frames(folder, chosen)
    if config.mask_channel is None:
        if need_masks:
            raise UserInputError("data.frames.mask_channel must name the channel of the masks")
        return images, None, chosen
    by_key = {(f.channel, f.slice, f.time, f.position): f for f in frames}
    mask_frames = []
    for f in chosen:
        mask = by_key.get((config.mask_channel, f.slice, f.time, f.position))
        if mask is None:
            raise UserInputError(
                f"no mask frame (channel {config.mask_channel}) for {f.file_name} in {folder}"
            )
        mask_frames.append(mask)
    masks = _read_frames(folder, mask_frames)
    if masks.shape[1:] != images.shape[-2:]:
        raise UserInputError(
            f"mask frames are {masks.shape[1]}x{masks.shape[2]} but image frames are "
            f"{images.shape[-2]}x{images.shape[-1]}"
        )
    return images, masks, chosen
