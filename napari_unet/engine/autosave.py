"""Autosave of label corrections: versioned, atomic, restorable after a crash.

While the user corrects a predicted mask in napari, the widgets call
:meth:`Autosaver.save` every few minutes and on close. Each call writes one
compressed ``.npz`` (the labels, the indices of the slices the user edited
and a small JSON header) to ``<project>/autosave/`` under a temporary name
and renames it into place, so a crash mid-save leaves the previous versions
intact. The last `keep` versions per layer are kept; an unchanged layer is
not written again. :meth:`Autosaver.restore` reads a version back with
``np.load(allow_pickle=False)``.

::

    saver = Autosaver(project_dir, keep=5)
    saver.save("em mask", labels, edited_slices=[3, 4])   # timer / on close
    saver.versions("em mask")                             # newest first
    restored = saver.restore(layer="em mask")             # after a crash
    restored.labels, restored.edited_slices, restored.version.saved_at

Large or lazily read labels (a zarr-backed napari layer) are written slice by slice, so
a save holds one slice in memory; :func:`slice_digests` hashes a stack slice by slice, so
the widgets can tell which slices changed without keeping a copy of the volume.

Never imports TensorFlow, napari or Qt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import UserInputError
from .stack_digests import combined_digest as combined_digest
from .stack_digests import is_lazy, iter_planes, savez_by_slice
from .stack_digests import slice_digest as slice_digest
from .stack_digests import slice_digests as slice_digests

__all__ = [
    "AUTOSAVE_FOLDER",
    "AutosaveVersion",
    "Autosaver",
    "RestoredLabels",
    "combined_digest",
    "slice_digest",
    "slice_digests",
]

#: Sub-folder of the project folder that holds the autosaves.
AUTOSAVE_FOLDER = "autosave"
_FORMAT = 1
_STAMP = "%Y%m%dT%H%M%S%fZ"
_NAME = re.compile(r"^(?P<slug>.+)--(?P<stamp>\d{8}T\d{12}Z)(?:-(?P<n>\d+))?\.npz$")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutosaveVersion:
    """One saved version of one layer.

    Attributes
    ----------
    layer
        The layer name as given to :meth:`Autosaver.save`.
    path
        The ``.npz`` file.
    saved_at
        When it was written (UTC).
    shape, dtype
        Of the labels array.
    edited_slices
        Indices of the slices the user had edited.
    digest
        Content hash (labels and edited slices).
    metadata
        The caller's extra facts (e.g. the source image, the model folder).
    """

    layer: str
    path: Path
    saved_at: datetime
    shape: tuple[int, ...]
    dtype: str
    edited_slices: tuple[int, ...] = ()
    digest: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RestoredLabels:
    """A version read back: the labels, the edited slices and where they came from."""

    labels: np.ndarray
    edited_slices: np.ndarray
    version: AutosaveVersion

    @property
    def metadata(self) -> dict[str, Any]:
        return self.version.metadata


class Autosaver:
    """Versioned autosaves of labels layers in ``<project>/autosave/``.

    Parameters
    ----------
    project
        The project (model) folder; ``autosave/`` is created inside on the
        first save.
    keep
        Versions kept per layer (the oldest are deleted after a new save).

    Thread-safe: the widgets may save from a worker thread while the user
    lists or restores versions.
    """

    def __init__(self, project: str | Path, keep: int = 5) -> None:
        if int(keep) < 1:
            raise UserInputError(f"autosave must keep at least one version, got {keep}")
        self.project = Path(project).expanduser()
        self.keep = int(keep)
        self._lock = threading.Lock()
        self._last_digest: dict[str, str] = {}

    @property
    def folder(self) -> Path:
        """``<project>/autosave``."""
        return self.project / AUTOSAVE_FOLDER

    # ----------------------------------------------------------------- saving

    def save(
        self,
        layer: str,
        labels: Any,
        edited_slices: Iterable[int] | np.ndarray = (),
        metadata: dict[str, Any] | None = None,
        force: bool = False,
        digest: str | None = None,
    ) -> AutosaveVersion | None:
        """Save `labels` as a new version of `layer` (atomically).

        Parameters
        ----------
        layer
            Layer name (any text; it is kept exactly in the file's header).
        labels
            Integer or boolean array: numpy (written in one go), or a lazy array
            (zarr, dask: read and written one slice at a time).
        edited_slices
            Indices of edited slices, or a boolean array over slices.
        metadata
            Extra JSON-serializable facts stored with the version.
        force
            Write even if nothing changed since this saver's last save.
        digest
            The caller's identity of the content (e.g. :func:`combined_digest` of
            per-slice digests it keeps up to date); when given, the labels are not
            read just to find out that nothing changed.

        Returns
        -------
        AutosaveVersion or None
            The new version, or None if the labels had not changed.

        Raises
        ------
        UserInputError
            For a non-integer array, or when the folder cannot be written
            (full disk, read-only folder); earlier versions are kept.
        """
        arr = labels if is_lazy(labels) else np.asarray(labels)
        dtype = np.dtype(arr.dtype)
        if dtype.kind not in "biu":
            raise UserInputError(f"autosave of {layer!r}: labels must be integers, got {dtype}")
        edited = _as_indices(edited_slices)
        with self._lock:
            if digest is None:
                digest = _digest(arr, edited)
            else:
                digest = f"{digest}:{edited.tobytes().hex()}"
            if not force and self._last_digest.get(layer) == digest:
                return None
            saved_at = datetime.now(timezone.utc)
            header = {
                "format": _FORMAT,
                "layer": layer,
                "saved_at": saved_at.isoformat(),
                "shape": list(arr.shape),
                "dtype": dtype.str,
                "digest": digest,
                "metadata": metadata or {},
            }
            try:
                text = json.dumps(header)
            except (TypeError, ValueError) as exc:
                raise UserInputError(f"autosave metadata is not JSON-serializable: {exc}") from None
            target = self._free_name(layer, saved_at)
            with atomic_path(target) as tmp, open(tmp, "wb") as handle:
                if isinstance(arr, np.ndarray):
                    np.savez_compressed(
                        handle, labels=arr, edited_slices=edited, header=np.array(text)
                    )
                else:
                    savez_by_slice(handle, arr, edited, text)
            self._last_digest[layer] = digest
            version = AutosaveVersion(
                layer=layer,
                path=target,
                saved_at=saved_at,
                shape=tuple(int(n) for n in arr.shape),
                dtype=dtype.str,
                edited_slices=tuple(int(i) for i in edited),
                digest=digest,
                metadata=metadata or {},
            )
            self._prune(layer)
        return version

    def _free_name(self, layer: str, saved_at: datetime) -> Path:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from .atomic import write_error

            raise write_error(self.folder, exc) from None
        base = f"{_slug(layer)}--{saved_at.strftime(_STAMP)}"
        target = self.folder / f"{base}.npz"
        n = 1
        while target.exists():  # two saves within one microsecond
            target = self.folder / f"{base}-{n}.npz"
            n += 1
        return target

    def _prune(self, layer: str) -> None:
        for old in self.versions(layer)[self.keep :]:
            try:
                old.path.unlink()
            except OSError as exc:  # pruning is housekeeping: never fail a save for it
                _log.warning("could not delete old autosave %s: %s", old.path, exc)

    # ----------------------------------------------------------------- listing

    def versions(self, layer: str | None = None) -> list[AutosaveVersion]:
        """Saved versions, newest first (of one layer, or of all layers).

        Unreadable files in the folder are skipped (and logged).
        """
        if not self.folder.is_dir():
            return []
        prefix = f"{_slug(layer)}--" if layer is not None else ""
        found = []
        for path in self.folder.glob(f"{prefix}*.npz"):
            if path.name.startswith(".") or not _NAME.match(path.name):
                continue  # temporary files of a save in progress, foreign files
            try:
                version = _read_header(path)
            except UserInputError as exc:
                _log.warning("skipping autosave %s: %s", path, exc)
                continue
            if layer is None or version.layer == layer:
                found.append(version)
        found.sort(key=lambda v: (v.saved_at, v.path.name), reverse=True)
        return found

    def latest(self, layer: str) -> AutosaveVersion | None:
        """The newest version of `layer`, or None."""
        versions = self.versions(layer)
        return versions[0] if versions else None

    def layers(self) -> list[str]:
        """Names of the layers that have autosaves, newest save first."""
        seen: dict[str, None] = {}
        for version in self.versions():
            seen.setdefault(version.layer, None)
        return list(seen)

    # ----------------------------------------------------------------- restoring

    def restore(
        self,
        version: AutosaveVersion | str | Path | None = None,
        layer: str | None = None,
    ) -> RestoredLabels:
        """Read a version back.

        Parameters
        ----------
        version
            A version (or its path); default: the newest version of `layer`.
        layer
            Used when `version` is None.

        Raises
        ------
        UserInputError
            If there is no such version or the file cannot be read.
        """
        if version is None:
            if layer is None:
                raise UserInputError("restore needs a version or a layer name")
            version = self.latest(layer)
            if version is None:
                raise UserInputError(f"there is no autosave of {layer!r} in {self.folder}")
        path = version.path if isinstance(version, AutosaveVersion) else Path(version)
        header = _read_header(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                labels = data["labels"]
                edited = data["edited_slices"].astype(np.int64)
        except Exception as exc:
            raise UserInputError(f"cannot read autosave {path}: {_reason(exc)}") from None
        if tuple(labels.shape) != header.shape or labels.dtype.str != header.dtype:
            raise UserInputError(f"autosave {path} is damaged (its header does not match)")
        return RestoredLabels(labels=labels, edited_slices=edited, version=header)

    def discard(self, layer: str) -> int:
        """Delete every version of `layer` (e.g. after the user saved it); returns the count."""
        with self._lock:
            versions = self.versions(layer)
            for version in versions:
                version.path.unlink(missing_ok=True)
            self._last_digest.pop(layer, None)
        return len(versions)


# --------------------------------------------------------------------------- helpers


def _slug(layer: str) -> str:
    """File-name-safe, readable and unique per exact layer name."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", layer).strip("._-")[:60] or "layer"
    tag = hashlib.blake2b(layer.encode("utf-8"), digest_size=4).hexdigest()
    return f"{readable}-{tag}"


def _as_indices(edited: Iterable[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(list(edited) if not isinstance(edited, np.ndarray) else edited)
    if arr.dtype == bool:
        arr = np.flatnonzero(arr)
    if arr.size and arr.dtype.kind not in "iu":
        raise UserInputError(f"edited slices must be slice indices, got {arr.dtype}")
    return np.unique(arr.astype(np.int64).ravel())


def _digest(labels: Any, edited: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tuple(int(n) for n in labels.shape)}{np.dtype(labels.dtype).str}".encode())
    if isinstance(labels, np.ndarray):
        digest.update(np.ascontiguousarray(labels).data)
    else:
        for plane in iter_planes(labels):
            digest.update(plane.data)
    digest.update(edited.tobytes())
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _read_header(path: Path) -> AutosaveVersion:
    """The version described by an autosave file's header (labels not loaded)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"][()]))
            edited = tuple(int(i) for i in data["edited_slices"])
    except Exception as exc:
        raise UserInputError(f"cannot read autosave {path}: {_reason(exc)}") from None
    try:
        return AutosaveVersion(
            layer=str(header["layer"]),
            path=Path(path),
            saved_at=datetime.fromisoformat(header["saved_at"]),
            shape=tuple(int(s) for s in header["shape"]),
            dtype=str(header["dtype"]),
            edited_slices=edited,
            digest=str(header.get("digest", "")),
            metadata=dict(header.get("metadata") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserInputError(f"autosave {path} has a damaged header ({exc})") from None
