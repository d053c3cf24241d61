"""Live loss curve of a training run.

Uses pyqtgraph's ``PlotWidget``: it is pure Qt (no second GUI toolkit, works
with PyQt5/PyQt6 through qtpy), draws thousands of points in well under a
millisecond, and updating a curve is just ``setData`` on arrays — there is
no figure to re-render as with matplotlib — so the event loop stays
responsive while training. Redraws are throttled further: events only
append to arrays and mark the plot dirty; a timer redraws at most
:attr:`LossPlot.REDRAW_MS` apart.

Left axis: training loss (running mean of the epoch, per step event) and
validation loss (per epoch). Right axis: validation Dice and, when computed,
validation Rand F-score (per epoch), both in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

__all__ = ["LossPlot"]


class LossPlot(QWidget):
    """Training/validation loss and a validation metric versus epochs."""

    REDRAW_MS = 250

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot_widget = pg.PlotWidget(background=None)
        self.plot_widget.setMinimumHeight(180)
        item = self.plot_widget.getPlotItem()
        item.setLabel("bottom", "epoch")
        item.setLabel("left", "loss")
        item.showGrid(x=True, y=True, alpha=0.2)
        legend = item.addLegend(offset=(10, 5), colCount=4, labelTextSize="8pt")
        legend.setBrush(pg.mkBrush(20, 20, 20, 160))
        self.train_curve = item.plot(name="train loss", pen=pg.mkPen("#4da6ff", width=2))
        self.val_curve = item.plot(
            name="val loss",
            pen=pg.mkPen("#ff9933", width=2),
            symbol="o",
            symbolSize=6,
            symbolBrush="#ff9933",
        )
        # right axis: metrics in [0, 1] in their own view box, x linked
        self.metric_view = pg.ViewBox()
        item.showAxis("right")
        item.scene().addItem(self.metric_view)
        item.getAxis("right").linkToView(self.metric_view)
        item.getAxis("right").setLabel("val Dice / Rand F")
        self.metric_view.setXLink(item)
        self.metric_view.setYRange(0.0, 1.0)
        self.metric_view.setMouseEnabled(y=False)
        self.dice_curve = pg.PlotDataItem(
            pen=pg.mkPen("#66cc66", width=2), symbol="t", symbolSize=7, symbolBrush="#66cc66"
        )
        self.rand_curve = pg.PlotDataItem(
            pen=pg.mkPen("#cc66cc", width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
            symbol="s",
            symbolSize=6,
            symbolBrush="#cc66cc",
        )
        self.metric_view.addItem(self.dice_curve)
        self.metric_view.addItem(self.rand_curve)
        legend.addItem(self.dice_curve, "val Dice")
        legend.addItem(self.rand_curve, "val Rand F")
        item.vb.sigResized.connect(self._sync_views)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget)

        self.data: dict[str, list[float]] = {}
        self.clear()
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(self.REDRAW_MS)
        self._timer.timeout.connect(self.flush)
        self._timer.start()

    def _sync_views(self) -> None:
        main_view = self.plot_widget.getPlotItem().vb
        self.metric_view.setGeometry(main_view.sceneBoundingRect())
        self.metric_view.linkedViewChanged(main_view, self.metric_view.XAxis)

    def clear(self) -> None:
        """Forget all points (a new run)."""
        self.data = {
            k: []
            for k in (
                "train_x",
                "train_y",
                "val_x",
                "val_y",
                "dice_x",
                "dice_y",
                "rand_x",
                "rand_y",
            )
        }
        self._dirty = True
        self.flush()

    def add_event(self, event: Any, steps_per_epoch: int) -> None:
        """Append the points of one engine ``TrainEvent`` (step or epoch)."""
        if event.kind == "step" and event.loss is not None:
            self.data["train_x"].append(event.step / max(steps_per_epoch, 1))
            self.data["train_y"].append(float(event.loss))
            self._dirty = True
        elif event.kind == "epoch" and event.val:
            x = event.step / max(steps_per_epoch, 1)
            for key, name in (("val", "loss"), ("dice", "dice"), ("rand", "rand_fscore")):
                if name in event.val and np.isfinite(event.val[name]):
                    self.data[f"{key}_x"].append(x)
                    self.data[f"{key}_y"].append(float(event.val[name]))
            self._dirty = True

    def flush(self) -> None:
        """Redraw the curves if new points arrived since the last redraw."""
        if not self._dirty:
            return
        self._dirty = False
        d = self.data
        self.train_curve.setData(np.asarray(d["train_x"]), np.asarray(d["train_y"]))
        self.val_curve.setData(np.asarray(d["val_x"]), np.asarray(d["val_y"]))
        self.dice_curve.setData(np.asarray(d["dice_x"]), np.asarray(d["dice_y"]))
        self.rand_curve.setData(np.asarray(d["rand_x"]), np.asarray(d["rand_y"]))

    def stop_timer(self) -> None:
        """Stop redrawing (the widget is closing)."""
        self._timer.stop()
