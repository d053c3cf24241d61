"""Failing the operating system under a writer: every write, fsync and rename point.

:class:`WritePoints` patches the points through which napari-unet's writers reach the
disk and counts them; told to, it raises an ``OSError`` (``ENOSPC`` by default) at
the n-th point of a kind:

- ``write``: ``write``/``writelines`` of every file opened for writing through
  ``open``/``io.open`` (tifffile, imageio, numpy, zipfile for Keras, pathlib), and
  ``os.write``;
- ``fsync``: ``os.fsync``;
- ``rename``: ``os.replace``, ``os.rename``, ``os.link`` and the ``renameat2`` call of
  :mod:`napari_unet.engine.atomic` (no-replace renames and folder exchanges).

Libraries that write from C (h5py, some zarr codecs) are not seen; their data still
ends in a file that is fsynced and renamed through the points above.

Used by tests/test_write_faults.py and benchmarks/bench_faults.py.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from collections import Counter
from typing import Any

from napari_unet.engine import atomic

__all__ = ["KINDS", "FaultyFile", "WritePoints"]

#: The kinds of points, in the order they are injected.
KINDS = ("write", "fsync", "rename")


class FaultyFile:
    """A file opened for writing whose ``write`` calls are write points."""

    def __init__(self, raw: Any, points: WritePoints) -> None:
        self._raw = raw
        self._points = points

    def write(self, data: Any) -> Any:
        self._points.hit("write")
        return self._raw.write(data)

    def writelines(self, lines: Any) -> None:
        self._points.hit("write")
        self._raw.writelines(lines)

    def __enter__(self) -> FaultyFile:
        self._raw.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._raw.__exit__(*exc)

    def __iter__(self) -> Any:
        return iter(self._raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class WritePoints:
    """Count the write, fsync and rename points; fail the `fail_at`-th of `kind`.

    Parameters
    ----------
    monkeypatch
        pytest's ``monkeypatch`` (or anything with ``setattr``).
    kind, fail_at
        Raise at the `fail_at`-th point (1-based) of `kind`; None counts only.
    code
        The ``errno`` of the raised error.
    every
        Raise at every point of `kind` from the `fail_at`-th on (a disk that stays full).
    """

    def __init__(
        self,
        monkeypatch: Any,
        kind: str | None = None,
        fail_at: int | None = None,
        code: int = errno.ENOSPC,
        every: bool = False,
    ) -> None:
        self.counts: Counter[str] = Counter()
        self.kind, self.fail_at, self.code, self.every = kind, fail_at, code, every
        self.failed = False
        real_open, real_io_open = builtins.open, io.open
        real = {name: getattr(os, name) for name in ("write", "fsync", "replace", "rename", "link")}
        real_renameat2 = atomic._renameat2

        def opener(original: Any) -> Any:
            def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
                handle = original(file, mode, *args, **kwargs)
                if isinstance(file, int) or not any(c in mode for c in "wax+"):
                    return handle
                return FaultyFile(handle, self)

            return open_

        def point(kind: str, function: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                self.hit(kind)
                return function(*args, **kwargs)

            return call

        monkeypatch.setattr(builtins, "open", opener(real_open))
        monkeypatch.setattr(io, "open", opener(real_io_open))
        monkeypatch.setattr(os, "write", point("write", real["write"]))
        monkeypatch.setattr(os, "fsync", point("fsync", real["fsync"]))
        for name in ("replace", "rename", "link"):
            monkeypatch.setattr(os, name, point("rename", real[name]))
        monkeypatch.setattr(atomic, "_renameat2", point("rename", real_renameat2))

    def hit(self, kind: str) -> None:
        """Count one point; raise if it is the one to fail."""
        self.counts[kind] += 1
        if kind != self.kind or self.fail_at is None:
            return
        if self.counts[kind] == self.fail_at or (self.every and self.counts[kind] > self.fail_at):
            self.failed = True
            raise OSError(self.code, os.strerror(self.code))
