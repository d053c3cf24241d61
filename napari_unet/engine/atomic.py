"""Atomic writes: every file goes to a temporary name beside its target, is
flushed to disk and renamed into place, so a crash never leaves a half-written
file and an existing file is only replaced when the caller allows it.

Three promises, kept in every path:

- **complete or not at all**: the data (every file of a folder, and the folders
  themselves) is fsynced before the rename, and the parent folder after it;
- **no silent replacement**: with ``overwrite=False`` the rename itself refuses
  to replace what appeared after the first check (``renameat2`` with
  ``RENAME_NOREPLACE`` on Linux; else a hard link for files and an
  ``mkdir`` claim for folders), never ``os.replace`` over it;
- **an old folder is swapped, not removed first**: with ``overwrite=True`` a
  folder is exchanged with its replacement in one step (``RENAME_EXCHANGE``),
  so a crash leaves either the old or the new folder at the target.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
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
    "commit",
    "exchange",
    "fsync_dir",
    "fsync_tree",
    "rename_noreplace",
    "replace_folder",
    "write_error",
]

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: errno values meaning "this system or file system cannot do that" (use a fallback).
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}


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
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise _exists_error(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise UserInputError(f"folder {parent} is not writable")


def _exists_error(target: Path) -> UserInputError:
    return UserInputError(f"{target} already exists; choose another name or allow overwriting")


# --------------------------------------------------------------------------- renames


def _libc_renameat2():
    """``renameat2`` from the C library, or None (not Linux, or glibc < 2.28)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _libc_renameat2()


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``: True when done, False when this system or file
    system does not support it; any other failure (e.g. ``EEXIST``) raises OSError."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def rename_noreplace(src: str | Path, dst: str | Path) -> None:
    """Rename `src` to `dst`, refusing (``FileExistsError``) if `dst` exists, even if it
    appeared a moment ago: the check and the rename are one step.

    Linux: ``renameat2(RENAME_NOREPLACE)``. Elsewhere, or on file systems without
    it: a file is hard-linked to `dst` (which fails if `dst` exists) and then
    unlinked; a folder claims `dst` with ``mkdir`` (which fails if it exists) and
    is renamed over that empty claim (which fails if anything was put into it).
    Windows' ``os.rename`` never replaces.
    """
    src, dst = Path(src), Path(dst)
    if _renameat2(src, dst, RENAME_NOREPLACE):
        return
    if os.name == "nt":  # pragma: no cover - os.rename refuses an existing target there
        os.rename(src, dst)
        return
    if src.is_dir() and not src.is_symlink():
        os.mkdir(dst, 0o700)  # FileExistsError if anything is there
        try:
            os.rename(src, dst)  # replaces only the empty folder we just made
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(dst)
            raise
        return
    try:
        os.link(src, dst)  # FileExistsError if anything is there
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED and exc.errno != errno.EXDEV:
            raise
        _claim_then_replace(src, dst)  # no hard links here (e.g. FAT, some network shares)
        return
    os.unlink(src)


def _claim_then_replace(src: Path, dst: Path) -> None:
    """Files on a file system without hard links: create `dst` exclusively (the claim,
    ``O_EXCL`` fails if it exists), then replace that empty claim with `src`."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        os.replace(src, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(dst)
        raise


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap two existing paths in one step (``renameat2(RENAME_EXCHANGE)``).

    Returns
    -------
    bool
        False if this system or file system cannot (nothing was changed then).
    """
    return _renameat2(Path(a), Path(b), RENAME_EXCHANGE)


def replace_folder(tmp: Path, target: Path) -> None:
    """Put the complete folder `tmp` at `target`, replacing what is there.

    The old folder is exchanged with the new one in one step and then deleted; without
    ``RENAME_EXCHANGE`` it is moved aside first (and moved back if the second rename
    fails), so a crash between the two leaves it as ``.<name>.old-*`` beside the target.
    """
    try:
        rename_noreplace(tmp, target)
        return
    except FileExistsError:
        pass
    if exchange(tmp, target):
        _remove(tmp)  # now the old folder
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{id(tmp):x}")
    os.rename(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)  # put the previous folder back
        raise
    _remove(old)


# --------------------------------------------------------------------------- fsync


def _fsync_path(path: Path, directory: bool) -> None:
    """fsync one file or folder; folders that cannot be opened or synced (some
    platforms and file systems) are skipped, a file's failure raises."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (directory and exc.errno in (errno.EINVAL, errno.EBADF, errno.ENOTSUP)):
            raise
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Make the renames inside `folder` durable (skipped where folders cannot be synced)."""
    _fsync_path(Path(folder), directory=True)


def fsync_tree(path: str | Path) -> None:
    """fsync a file, or every file and folder under `path` (deepest first) and `path`.

    Raises
    ------
    OSError
        If a file cannot be synced (e.g. the disk is full or failing).
    """
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        if path.is_file():
            _fsync_path(path, directory=False)
        return
    for dirpath, _dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            file = Path(dirpath) / name
            if file.is_file() and not file.is_symlink():
                _fsync_path(file, directory=False)
        _fsync_path(Path(dirpath), directory=True)


# --------------------------------------------------------------------------- writers


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Sync the complete `tmp` and rename it to `target`, then sync the parent folder.

    The parent's sync after the rename is best effort: the new file is then complete
    and in place, so a failure there (a folder that cannot be synced) changes nothing.

    Raises
    ------
    UserInputError
        If `overwrite` is False and `target` exists (it may have appeared while writing).
    """
    fsync_tree(tmp)
    if overwrite and not tmp.is_dir():
        os.replace(tmp, target)
    elif overwrite:
        replace_folder(tmp, target)
    else:
        try:
            rename_noreplace(tmp, target)
        except FileExistsError:
            raise _exists_error(target) from None
    with contextlib.suppress(OSError):
        fsync_dir(target.parent)


def commit(staged: str | Path, target: str | Path, overwrite: bool = True) -> Path:
    """Move a completely written file or folder `staged` (on the same file system) to
    `target` the way :func:`atomic_path` does: synced, renamed in one step, never
    over a `target` that exists when `overwrite` is False.

    For writers that must stage under a name of their own (e.g. Keras wants
    ``*.weights.h5``). `staged` is left in place when this fails.

    Raises
    ------
    UserInputError
        One line naming `target`: it exists (without `overwrite`), or an OS error
        (full disk, read-only folder) prevented the move.
    """
    staged, target = Path(staged), Path(target)
    try:
        _commit(staged, target, overwrite)
    except OSError as exc:
        raise write_error(target, exc) from None
    return target


@contextlib.contextmanager
def atomic_path(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success sync and rename it to `target`.

    The temporary name keeps the target's suffix so that libraries that pick a
    format from the extension (Keras, tifffile) still work. On error the
    temporary file is removed and `target` is left as it was. With
    `overwrite` False, a `target` that appears while writing is not replaced
    (see :func:`rename_noreplace`).
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
        _commit(tmp, target, overwrite)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):  # full disk, read-only folder...: one clear line
            raise write_error(target, exc) from None
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success move it to `target`.

    Every file and folder in it is fsynced before the rename. With `overwrite`, an
    existing `target` folder is swapped for the new one only after the new one is
    complete; without it, a `target` that appeared meanwhile is never replaced.
    """
    target = Path(target)
    check_writable(target, overwrite)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise write_error(target, exc) from None
    try:
        yield tmp
        _commit(tmp, target, overwrite)
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
    errno.EIO: "input/output error (a failing disk?)",
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


def atomic_write_bytes(target: str | Path, data: bytes, overwrite: bool = True) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str, overwrite: bool = True) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"), overwrite)
