"""Real permission failures, also for root (the CI runs as root, for whom ``chmod`` stops
nothing).

- :func:`unwritable_folder`: a folder nobody can create files in: the immutable
  attribute (``chattr +i``, set with the ``FS_IOC_SETFLAGS`` ioctl; root needs
  ``CAP_LINUX_IMMUTABLE``), or, for a normal user, mode 0555.
- :func:`read_without_privilege`: run Python code in a process that obeys file
  permissions (root's child drops its DAC capabilities), so that a file with mode 0
  really cannot be read.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["read_without_privilege", "unwritable_folder"]

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x00000010


def _set_immutable(path: Path, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        flags = struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
        flags = flags | _FS_IMMUTABLE_FL if on else flags & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("l", flags))
    finally:
        os.close(fd)


@contextlib.contextmanager
def unwritable_folder(path: Path) -> Iterator[Path]:
    """While inside, no file can be created, renamed or removed in `path` (a folder)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    try:
        _set_immutable(path, True)
    except OSError as exc:
        pytest.skip(f"cannot make a folder immutable here ({exc.strerror}); root ignores chmod")
    try:
        probe = path / ".napari-unet-probe"
        with contextlib.suppress(OSError):
            probe.write_bytes(b"")
            probe.unlink()
            raise AssertionError("the immutable folder took a new file")
        yield path
    finally:
        _set_immutable(path, False)


def read_without_privilege(code: str) -> subprocess.CompletedProcess:
    """Run `code` with ``python -c`` in a process that obeys file permissions.

    As root, the child drops ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` from its
    capability bounding set before it starts (``prctl(PR_CAPBSET_DROP)``), so a file of
    mode 0 is refused to it as to anybody; another user needs nothing.
    """
    preexec = None
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)

        def preexec() -> None:
            for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
                if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
    )
