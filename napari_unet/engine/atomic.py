"""Atomic writes: every file goes to a temporary name beside its target and is
renamed into place, so a crash never leaves a half-written file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserInputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_dir", "check_writable"]


def check_writable(target: Path, overwrite: bool = True) -> None:
    """Raise :class:`UserInputError` if `target` cannot be written.

    Parameters
    ----------
    target
        File or folder to be written.
    overwrite
        If False, an existing `target` is an error.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise UserInputError(f"{target} already exists; choose another name or allow overwriting")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise UserInputError(f"folder {parent} is not writable")


@contextlib.contextmanager
def atomic_path(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it to `target`.

    The temporary name keeps the target's suffix so that libraries that pick a
    format from the extension (Keras, tifffile) still work. On error the
    temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    check_writable(target, overwrite)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # let the writer create it (some refuse existing files)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written to {target}")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success move it to `target`.

    With `overwrite`, an existing `target` folder is replaced only after the
    new one is complete.
    """
    target = Path(target)
    check_writable(target, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_file(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def atomic_write_bytes(target: str | Path, data: bytes, overwrite: bool = True) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str, overwrite: bool = True) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"), overwrite)
