"""Atomic writes: every file goes to a temporary name beside its target and is
renamed into place, so a crash never leaves a half-written file."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UserInputError

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "write_error",
]


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
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
        )
        os.close(fd)
    except OSError as exc:
        raise write_error(target, exc) from None
    tmp = Path(tmp_name)
    tmp.unlink()  # let the writer create it (some refuse existing files)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written to {target}")
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        if isinstance(exc, OSError):  # full disk, read-only folder...: one clear line
            raise write_error(target, exc) from None
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success move it to `target`.

    With `overwrite`, an existing `target` folder is replaced only after the
    new one is complete.
    """
    target = Path(target)
    check_writable(target, overwrite)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise write_error(target, exc) from None
    try:
        yield tmp
        if target.exists():
            if not overwrite:  # appeared while we were writing
                raise UserInputError(
                    f"{target} already exists; choose another name or allow overwriting"
                )
            old = target.with_name(f".{target.name}.old")
            _remove(old)
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)  # put the previous folder back
                raise
            _remove(old)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(target, exc) from None
        raise


_ERRNO_TEXT = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def write_error(target: str | Path, exc: OSError) -> UserInputError:
    """A one-line :class:`UserInputError` for an OS error while writing `target`.

    The message names the file and the reason (full disk, read-only folder,
    permission) and says that the existing file, if any, was left as it was.
    """
    reason = _ERRNO_TEXT.get(exc.errno) if exc.errno is not None else None
    if reason is None:
        reason = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UserInputError(f"cannot write {target}: {reason}; nothing was changed there")


def _remove(path: Path) -> None:
    """Delete a file or folder if it exists (best effort)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort; not every platform can open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
