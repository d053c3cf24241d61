"""User-facing messages: every problem becomes one napari notification, never a traceback."""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error, show_info, show_warning

from napari_unet.engine.errors import UserInputError

__all__ = ["error", "info", "report_exception", "warning"]

_log = logging.getLogger("napari_unet")

_OOM_NAMES = ("ResourceExhaustedError", "OutOfMemoryError")


def error(message: str) -> None:
    """Show an error notification."""
    show_error(message)


def warning(message: str) -> None:
    """Show a warning notification."""
    show_warning(message)


def info(message: str) -> None:
    """Show an information notification."""
    show_info(message)


def report_exception(exc: BaseException, doing: str) -> str:
    """Show `exc` as one clear notification and return the message shown.

    Parameters
    ----------
    exc
        The exception (from a worker's ``errored`` signal or a button handler).
    doing
        What was being done, e.g. ``"training"``; used in the message.
    """
    if isinstance(exc, UserInputError):
        message = str(exc)
    elif isinstance(exc, MemoryError) or type(exc).__name__ in _OOM_NAMES:
        message = f"out of memory while {doing}: lower the batch size, patch size or tile size"
    else:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"{doing} failed: {type(exc).__name__}"
        if first_line:
            message += f": {first_line}"
        _log.warning("napari-unet: %s", message, exc_info=exc)
    error(message)
    return message
