"""Layout shared by the sections of the Correct & retrain tab: a titled box and a row."""

from __future__ import annotations

from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QVBoxLayout, QWidget

__all__ = ["LoopSection", "row"]


class LoopSection(QGroupBox):
    """A titled group box whose widgets are stacked vertically.

    Parameters
    ----------
    title
        The box title.
    """

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self._box_layout = QVBoxLayout(self)
        self._box_layout.setContentsMargins(4, 4, 4, 4)

    def add_widgets(self, widgets: list[QWidget]) -> None:
        """Append `widgets` to the box, top to bottom."""
        for widget in widgets:
            self._box_layout.addWidget(widget)

    def shutdown(self) -> None:
        """Stop the section's timers and connections when the dock closes (default: none)."""


def row(*widgets: QWidget) -> QWidget:
    """`widgets` side by side, without margins."""
    line = QWidget()
    layout = QHBoxLayout(line)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return line
