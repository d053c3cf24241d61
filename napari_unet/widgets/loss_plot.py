"""Live loss curves of a training run: plain axes (epoch, loss) and a legend of what is drawn.

Uses pyqtgraph's ``PlotWidget``: it is pure Qt (no second GUI toolkit, works
with PyQt5/PyQt6 through qtpy), draws thousands of points in well under a
millisecond, and updating a curve is just ``setData`` on arrays — there is
no figure to re-render as with matplotlib — so the event loop stays
responsive while training. Redraws are throttled further: events only
append to arrays and mark the plot dirty; a timer redraws at most
:attr:`LossPlot.REDRAW_MS` apart.

Drawn, against fractional epochs: the training loss of the batches (faint),
the training loss averaged over the last epoch's worth of batches (so it does
not restart every epoch), and the validation loss after each epoch. The legend
lists only the curves that have points. Validation Dice and Rand F-score are
recorded in :attr:`LossPlot.data` and shown as text under the plot.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

__all__ = ["LossPlot"]

_KEYS = ("train_x", "train_y", "raw_y", "val_x", "val_y", "dice_x", "dice_y", "rand_x", "rand_y")


class LossPlot(QWidget):
    """Training (batch and epoch-smoothed) and validation loss versus epochs."""

    REDRAW_MS = 250

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot_widget = pg.PlotWidget(background=None)
        self.plot_widget.setMinimumHeight(180)
        item = self.plot_widget.getPlotItem()
        item.setLabel("bottom", "epoch")
        item.setLabel("left", "loss")
        item.showGrid(x=True, y=True, alpha=0.2)
        self.legend = item.addLegend(offset=(-10, 5), labelTextSize="8pt")
        self.legend.setBrush(pg.mkBrush(20, 20, 20, 160))
        self.raw_curve = item.plot(pen=pg.mkPen(77, 166, 255, 90, width=1))
        self.train_curve = item.plot(pen=pg.mkPen("#4da6ff", width=2))
        self.val_curve = item.plot(
            pen=pg.mkPen("#ff9933", width=2), symbol="o", symbolSize=6, symbolBrush="#ff9933"
        )
        self._curves = (
            (self.raw_curve, "raw_y", "train loss (batches)"),
            (self.train_curve, "train_y", "train loss (1-epoch mean)"),
            (self.val_curve, "val_y", "validation loss"),
        )
        self._in_legend: set[str] = set()
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget)
        layout.addWidget(self.metrics_label)

        self.data: dict[str, list[float]] = {}
        self.clear()
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(self.REDRAW_MS)
        self._timer.timeout.connect(self.flush)
        self._timer.start()

    def clear(self) -> None:
        """Forget all points (a new run)."""
        self.data = {k: [] for k in _KEYS}
        self._window: deque[tuple[int, float]] = deque()  # (batches, summed loss) chunks
        self._epoch_sum: tuple[int, int, float] = (0, 0, 0.0)  # epoch, batches, summed loss
        self.metrics_label.setText("")
        self._dirty = True
        self.flush()

    def add_event(self, event: Any, steps_per_epoch: int) -> None:
        """Append the points of one engine ``TrainEvent`` (step or epoch)."""
        per_epoch = max(int(steps_per_epoch), 1)
        if event.kind == "step" and event.loss is not None and np.isfinite(event.loss):
            batches, summed = self._new_batches(event, per_epoch)
            x = event.step / per_epoch
            self.data["train_x"].append(x)
            self.data["raw_y"].append(summed / batches if batches else float(event.loss))
            self.data["train_y"].append(self._smoothed(batches, summed, per_epoch))
            self._dirty = True
        elif event.kind == "epoch" and event.val:
            x = event.step / per_epoch
            for key, name in (("val", "loss"), ("dice", "dice"), ("rand", "rand_fscore")):
                if name in event.val and np.isfinite(event.val[name]):
                    self.data[f"{key}_x"].append(x)
                    self.data[f"{key}_y"].append(float(event.val[name]))
            self._dirty = True
            self._show_metrics(event)

    def _new_batches(self, event: Any, per_epoch: int) -> tuple[int, float]:
        """Batches trained since the previous step event and their summed loss.

        A step event carries the running mean of its epoch, so the batches in
        between are the difference of the running sums.
        """
        epoch = int(getattr(event, "epoch", 0) or 0)
        in_epoch = event.step - (epoch - 1) * per_epoch if epoch >= 1 else event.step
        in_epoch = max(int(in_epoch), 1)
        total = float(event.loss) * in_epoch
        last_epoch, last_batches, last_total = self._epoch_sum
        if epoch == last_epoch and in_epoch > last_batches:
            batches, summed = in_epoch - last_batches, total - last_total
        else:
            batches, summed = in_epoch, total
        self._epoch_sum = (epoch, in_epoch, total)
        return batches, summed

    def _smoothed(self, batches: int, summed: float, per_epoch: int) -> float:
        """Mean loss of the last `per_epoch` batches (the chunks that cover them)."""
        self._window.append((batches, summed))
        count = sum(n for n, _ in self._window)
        while len(self._window) > 1 and count - self._window[0][0] >= per_epoch:
            count -= self._window.popleft()[0]
        return sum(s for _, s in self._window) / max(count, 1)

    def _show_metrics(self, event: Any) -> None:
        """The epoch's validation scores as text (loss, Dice, Rand F-score)."""
        parts = []
        for name, label, digits in (
            ("loss", "val loss", 4),
            ("dice", "Dice", 3),
            ("rand_fscore", "Rand F-score", 3),
        ):
            value = event.val.get(name)
            if value is not None and np.isfinite(value):
                parts.append(f"{label} {value:.{digits}f}")
        self.metrics_label.setText(f"epoch {event.epoch}: " + ", ".join(parts))

    def flush(self) -> None:
        """Redraw the curves if new points arrived since the last redraw."""
        if not self._dirty:
            return
        self._dirty = False
        d = self.data
        xs = {"raw_y": d["train_x"], "train_y": d["train_x"], "val_y": d["val_x"]}
        for curve, key, name in self._curves:
            curve.setData(np.asarray(xs[key]), np.asarray(d[key]))
            if d[key] and key not in self._in_legend:
                self.legend.addItem(curve, name)
                self._in_legend.add(key)
            elif not d[key] and key in self._in_legend:
                self.legend.removeItem(curve)
                self._in_legend.discard(key)

    def stop_timer(self) -> None:
        """Stop redrawing (the widget is closing)."""
        self._timer.stop()
