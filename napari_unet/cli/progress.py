"""Progress output of the commands that train or predict: one compact line on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["progress_printer"]


def progress_printer(quiet: bool) -> Callable[[Any], None]:
    """A callback that prints engine events as a compact progress line.

    Parameters
    ----------
    quiet : bool
        Print nothing.

    Returns
    -------
    callable
        ``show(event)`` for the engine's ``TrainEvent`` and ``PredictEvent``. Step
        and tile progress is only drawn when stderr is a terminal.
    """
    from ..engine.events import PredictEvent, TrainEvent

    is_tty = sys.stderr.isatty()

    def show(event: Any) -> None:
        if quiet:
            return
        if isinstance(event, TrainEvent):
            if event.kind == "start":
                print(event.message, file=sys.stderr)
            elif event.kind == "step" and is_tty:
                bar = _train_bar(event)
                print(
                    f"\r{bar} epoch {event.epoch}/{event.total_epochs} step {event.step} "
                    f"loss {event.loss:.4f} eta {_fmt_eta(event.eta)}   ",
                    end="",
                    file=sys.stderr,
                )
            elif event.kind == "epoch":
                val = " ".join(f"val_{k} {v:.4f}" for k, v in event.val.items())
                end = "\n"
                print(
                    f"\r{_train_bar(event)} epoch {event.epoch}/"
                    f"{event.total_epochs} loss {event.loss:.4f} {val} "
                    f"eta {_fmt_eta(event.eta)} {event.message}",
                    end=end,
                    file=sys.stderr,
                )
            elif event.kind in ("done", "stopped"):
                print(f"training ended: {event.message}", file=sys.stderr)
        elif isinstance(event, PredictEvent) and is_tty:
            print(
                f"\r{_bar(event.done, event.total)} tiles {event.done}/{event.total} "
                f"eta {_fmt_eta(event.eta)}   ",
                end="" if event.done < event.total else "\n",
                file=sys.stderr,
            )

    return show


def _train_bar(event: Any) -> str:
    """Progress by steps, or by time when a wall-clock budget ends training first."""
    if event.eta is not None and event.elapsed > 0:
        return _bar(event.elapsed, event.elapsed + event.eta)
    return _bar(event.step, event.total_steps)


def _bar(done: float, total: float, width: int = 24) -> str:
    """A text progress bar with the percentage done."""
    fraction = min(done / total, 1.0) if total else 0.0
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}"


def _fmt_eta(seconds: float | None) -> str:
    """``MM:SS``, or ``--:--`` when the remaining time is unknown."""
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
