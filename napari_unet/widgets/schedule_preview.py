"""A small curve of the learning rate over the planned run, redrawn when the recipe changes.

It evaluates :func:`~napari_unet.engine.training.schedules.lr_at` (pure Python,
no TensorFlow) for the dock's current config, the same function the training
loop calls before every batch, so what is drawn is what training will use
(the cosine schedule follows the time budget's clock instead when the budget
ends training first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_unet.engine.errors import UserInputError

__all__ = ["SchedulePreview", "schedule_curve"]

#: At most this many points are drawn.
MAX_POINTS = 400


def schedule_curve(config: Any, points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and learning rates of the planned run, sampled at up to `points` steps.

    Parameters
    ----------
    config
        A whole Config (``train`` section: learning rate, schedule, epochs, steps).
    points
        Samples along the run.

    Returns
    -------
    epochs, rates
        ``epochs`` in fractional epochs (x), ``rates`` the learning rate (y).
    """
    from napari_unet.engine.training.schedules import lr_at

    train = config.train
    total = train.epochs * train.steps_per_epoch
    steps = np.unique(np.linspace(0, max(total - 1, 0), min(points, max(total, 1))).astype(int))
    rates = np.array([lr_at(int(s), train.steps_per_epoch, total, train) for s in steps])
    return steps / train.steps_per_epoch, rates


class SchedulePreview(QWidget):
    """The learning-rate curve of the current settings.

    Parameters
    ----------
    build_config
        Returns the dock's current Config (raises UserInputError if invalid).
    """

    REFRESH_MS = 150

    def __init__(self, build_config: Callable[[], Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._build_config = build_config
        self.plot_widget = pg.PlotWidget(background=None)
        self.plot_widget.setFixedHeight(110)
        item = self.plot_widget.getPlotItem()
        item.setLabel("bottom", "epoch")
        item.setLabel("left", "learning rate")
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setMenuEnabled(False)
        self.curve = item.plot(pen=pg.mkPen("#4da6ff", width=2))
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget)
        layout.addWidget(self.label)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self.rates = np.zeros(0)

    def schedule_refresh(self, *_: Any) -> None:
        """Redraw soon (settings changes arrive in bursts)."""
        self._timer.start()

    def refresh(self) -> None:
        """Redraw the curve for the current settings (or say why it cannot)."""
        try:
            config = self._build_config()
        except UserInputError as exc:
            self.curve.setData([], [])
            self.rates = np.zeros(0)
            self.label.setText(str(exc))
            return
        epochs, rates = schedule_curve(config)
        self.rates = rates
        self.curve.setData(epochs, rates)
        schedule = config.train.schedule
        text = f"{schedule.kind}: {rates[0]:.3g} → {rates[-1]:.3g} (peak {rates.max():.3g})"
        if config.train.max_minutes and schedule.kind == "cosine":
            text += (
                f"; with the {config.train.max_minutes:g} min budget the decay follows the clock"
            )
        self.label.setText(text)
