"""Per-slice metrics / uncertainty table of the Correct & retrain tab.

Rows sort numerically (click a header); the ``overall`` row stays on top in
either order. Double-clicking a row emits :attr:`MetricsTable.slice_activated`
with the slice index, so the tab can move the viewer there.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

__all__ = ["METRIC_COLUMNS", "MetricsTable", "SortItem"]

#: (key in ``metrics.evaluate``, header, higher is better)
METRIC_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("pixel_error", "pixel error", False),
    ("dice", "Dice", True),
    ("rand_fscore", "Rand F", True),
    ("vi", "VI", False),
)

OVERALL = "overall"


class SortItem(QTableWidgetItem):
    """A table cell that sorts by a number; a *pinned* cell stays on top.

    Parameters
    ----------
    text
        What the cell shows.
    key
        Sort key (NaN sorts as +inf).
    pinned
        Keep this row first whatever the sort order (the overall row).
    """

    def __init__(self, text: str, key: float, pinned: bool = False) -> None:
        super().__init__(text)
        self.key = math.inf if key != key else float(key)  # NaN -> +inf
        self.pinned = pinned
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if not isinstance(other, SortItem):
            return super().__lt__(other)
        if self.pinned != other.pinned:
            table = self.tableWidget()
            ascending = (
                table is None
                or table.horizontalHeader().sortIndicatorOrder() == Qt.SortOrder.AscendingOrder
            )
            # Qt sorts descending with ``right < left``: answer so the pinned row comes first
            return self.pinned if ascending else other.pinned
        return self.key < other.key


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


class MetricsTable(QTableWidget):
    """Per-slice EM metrics (with the change since a previous evaluation) or uncertainty.

    Attributes
    ----------
    mode
        ``"metrics"``, ``"uncertainty"`` or ``""`` (empty table).
    """

    slice_activated = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 0, parent)
        self.mode = ""
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setMinimumHeight(140)
        self.setToolTip("Double-click a row to show that slice; click a header to sort")
        self.cellDoubleClicked.connect(self._on_double_click)

    # ----------------------------------------------------------------- filling

    def _fill(self, headers: list[str], rows: list[tuple[list[tuple[str, float]], bool]]) -> None:
        self.setSortingEnabled(False)
        self.clear()
        self.setColumnCount(len(headers))
        self.setHorizontalHeaderLabels(headers)
        self.setRowCount(len(rows))
        for r, (cells, pinned) in enumerate(rows):
            for c, (text, key) in enumerate(cells):
                self.setItem(r, c, SortItem(text, key, pinned))
        self.setSortingEnabled(True)

    def show_metrics(
        self,
        result: dict[str, Any],
        previous: dict[str, Any] | None = None,
        previous_name: str = "",
    ) -> None:
        """Show ``metrics.evaluate`` output, sorted worst Rand F-score first.

        Parameters
        ----------
        result
            The evaluation (overall keys and ``per_slice``).
        previous
            An earlier evaluation of the same slices: adds a change column per metric.
        previous_name
            What `previous` evaluated (a version name), for the headers' tooltip.
        """
        headers = ["slice"] + [title for _, title, _ in METRIC_COLUMNS]
        if previous is not None:
            headers += [f"Δ {title}" for _, title, _ in METRIC_COLUMNS]
        before = {int(s["slice"]): s for s in (previous or {}).get("per_slice", [])}

        def cells(
            record: dict[str, Any], old: dict[str, Any] | None, label: str, key: float
        ) -> list[tuple[str, float]]:
            row = [(label, key)]
            row += [
                (_fmt(record.get(k)), float(record.get(k, math.nan))) for k, _, _ in METRIC_COLUMNS
            ]
            if previous is not None:
                for k, _, _ in METRIC_COLUMNS:
                    delta = (
                        float(record.get(k, math.nan)) - float(old.get(k, math.nan))
                        if old is not None
                        else math.nan
                    )
                    row.append((_fmt(delta, signed=True), delta))
            return row

        rows = [(cells(result, previous, OVERALL, -1.0), True)]
        for record in result.get("per_slice", []):
            z = int(record["slice"])
            rows.append((cells(record, before.get(z), str(z), float(z)), False))
        self._fill(headers, rows)
        if previous is not None:
            tip = f"change since {previous_name or 'the previous evaluation'}"
            for c in range(1 + len(METRIC_COLUMNS), len(headers)):
                self.horizontalHeaderItem(c).setToolTip(tip)
        self.mode = "metrics"
        self.sortByColumn(headers.index("Rand F"), Qt.SortOrder.AscendingOrder)

    def show_ranking(self, ranking: list[dict[str, float]]) -> None:
        """Show ranked slices in the suggested order to correct them (``"pick"``, from
        ``ranking.spread_order``; most uncertain first when the records have none)."""
        rows = [
            (
                [
                    (str(int(r["slice"])), float(r["slice"])),
                    (str(int(r.get("pick", place))), float(r.get("pick", place))),
                    (_fmt(r["entropy"]), float(r["entropy"])),
                    (_fmt(r["uncertain_fraction"]), float(r["uncertain_fraction"])),
                ],
                False,
            )
            for place, r in enumerate(ranking, start=1)
        ]
        self._fill(["slice", "pick order", "uncertainty (entropy)", "fraction near 0.5"], rows)
        self.horizontalHeaderItem(1).setToolTip(
            "suggested order to correct: the most uncertain slices first, spread through "
            "the stack (neighbouring slices show nearly the same cells)"
        )
        self.mode = "uncertainty"
        self.sortByColumn(1, Qt.SortOrder.AscendingOrder)

    # ----------------------------------------------------------------- reading

    def slice_at(self, row: int) -> int | None:
        """The slice index shown in `row` (None for the overall row)."""
        item = self.item(row, 0)
        if item is None or item.text() == OVERALL:
            return None
        return int(item.text())

    def row_labels(self) -> list[str]:
        """The first column, top to bottom (``"overall"`` or slice indices)."""
        return [self.item(r, 0).text() for r in range(self.rowCount())]

    def _on_double_click(self, row: int, _column: int) -> None:
        z = self.slice_at(row)
        if z is not None:
            self.slice_activated.emit(z)
