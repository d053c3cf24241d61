"""Progress of a long job: napari's activity-dock bar plus a bar and a label in the tab.

The tab's own bar and label follow every update. napari's activity-dock entry costs
tens of milliseconds to create (it builds widgets and processes events) and each
change of its text redraws the dock, so it is created on the next turn of the event
loop (not inside the button's click handler) and updated at most every
:data:`NAPARI_UPDATE_S` seconds.
"""

from __future__ import annotations

import math
import time

from napari.utils import progress
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QProgressBar

__all__ = ["NAPARI_UPDATE_S", "TaskProgress", "format_seconds"]

#: Least time between two updates of napari's activity-dock entry.
NAPARI_UPDATE_S = 0.25


def format_seconds(seconds: float | None) -> str:
    """``"1:05"``, ``"1:02:03"``, or ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = round(max(seconds, 0.0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TaskProgress:
    """Mirror a job's progress in napari's activity dock (``napari.utils.progress``)
    and in the tab's own bar and status label, with an ETA.

    Parameters
    ----------
    description
        Short name shown in the activity dock ("Training").
    bar, label
        The tab's widgets (optional).
    """

    def __init__(
        self, description: str, bar: QProgressBar | None = None, label: QLabel | None = None
    ) -> None:
        self.description = description
        self.bar = bar
        self.label = label
        self._pbar: progress | None = None
        self._total = 0
        self._active = False
        self._generation = 0
        self._pending: tuple[int, str] | None = None
        self._last_napari = 0.0
        self._scheduled = False

    def start(self, total: int, text: str = "") -> None:
        """Begin with `total` units of work."""
        self.close()
        self._total = max(int(total), 1)
        self._active = True
        self._generation += 1
        generation = self._generation
        QTimer.singleShot(0, lambda: self._create_pbar(generation))
        if self.bar is not None:
            self.bar.setRange(0, self._total)
            self.bar.setValue(0)
            self.bar.setFormat("%p%")
        if self.label is not None and text:
            self.label.setText(text)

    def update(self, done: int, text: str = "", eta: float | None = None) -> None:
        """Set the units done and the status text (``ETA m:ss`` is appended)."""
        done = int(min(max(done, 0), self._total))
        eta_text = f"ETA {format_seconds(eta)}"
        full = f"{text} — {eta_text}" if text else eta_text
        if self._active:
            self._pending = (done, full)
            wait = NAPARI_UPDATE_S - (time.perf_counter() - self._last_napari)
            if wait <= 0:
                self._push()
            elif not self._scheduled:
                self._scheduled = True
                generation = self._generation
                QTimer.singleShot(int(wait * 1000) + 1, lambda: self._push(generation))
        if self.bar is not None:
            self.bar.setValue(done)
            self.bar.setFormat(f"%p%  {eta_text}")
        if self.label is not None:
            self.label.setText(full)

    def _create_pbar(self, generation: int) -> None:
        if generation == self._generation and self._active and self._pbar is None:
            self._pbar = progress(total=self._total, desc=self.description)
            self._push()

    def _push(self, generation: int | None = None) -> None:
        """Show the latest update in napari's activity dock."""
        if generation is not None:
            self._scheduled = False
        if generation not in (None, self._generation) or self._pbar is None:
            return
        if self._pending is not None:
            done, full = self._pending
            self._pending = None
            self._last_napari = time.perf_counter()
            self._pbar.n = done
            self._pbar.set_description(f"{self.description}: {full}")  # also refreshes

    def close(self, text: str = "") -> None:
        """Remove the activity-dock entry; keep `text` in the tab's label."""
        self._active = False
        self._pending = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if self.bar is not None and text:
            self.bar.setFormat(text)
        if self.label is not None and text:
            self.label.setText(text)

    @property
    def active(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._active
