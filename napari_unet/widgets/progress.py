"""Progress of a long job: napari's activity-dock bar plus a bar and a label in the tab."""

from __future__ import annotations

import math

from napari.utils import progress
from qtpy.QtWidgets import QLabel, QProgressBar

__all__ = ["TaskProgress", "format_seconds"]


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

    def start(self, total: int, text: str = "") -> None:
        """Begin with `total` units of work."""
        self.close()
        self._total = max(int(total), 1)
        self._pbar = progress(total=self._total, desc=self.description)
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
        if self._pbar is not None:
            self._pbar.n = done
            self._pbar.set_description(f"{self.description}: {full}")  # also refreshes
        if self.bar is not None:
            self.bar.setValue(done)
            self.bar.setFormat(f"%p%  {eta_text}")
        if self.label is not None:
            self.label.setText(full)

    def close(self, text: str = "") -> None:
        """Remove the activity-dock entry; keep `text` in the tab's label."""
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
        return self._pbar is not None
