"""The "Advanced" sections of the dock, generated from the config models' fields.

:class:`AdvancedPanel` walks a pydantic model (the whole
:class:`~napari_unet.engine.config.Config` by default), takes the sections it
is given (``["data"]`` on the Data tab) and makes one editor per field that no
visible widget shows (see :mod:`.config_fields`), nested sections as group
boxes. A field added to a config section therefore shows up here with its
range, choices and description, without a hand-written widget.
:class:`Collapsible` hides it behind a small arrow so the tabs stay uncrowded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import BaseModel
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .config_fields import Editor, field_label, field_tooltip, is_section, make_editor

__all__ = ["AdvancedPanel", "Collapsible", "config_keys"]


def config_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every editable dotted key of `model`: its leaf fields, and each optional
    section (``data.frames``) as one key; nested sections are walked into."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        if is_section(info.annotation):
            yield from config_keys(info.annotation, key + ".")
        else:
            yield key


class Collapsible(QWidget):
    """A title with an arrow that shows or hides `content`.

    Parameters
    ----------
    title
        The text beside the arrow.
    content
        The widget shown when expanded.
    expanded
        Start expanded.
    """

    def __init__(
        self, title: str, content: QWidget, expanded: bool = False, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.content = content
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.toggle.toggled.connect(self.set_expanded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        layout.addWidget(self.toggle)
        layout.addWidget(content)
        self.set_expanded(expanded)

    @property
    def expanded(self) -> bool:
        """True while the content is shown."""
        return self.toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        """Show or hide the content."""
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)  # re-enters through `toggled`
            return
        arrow = Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow
        self.toggle.setArrowType(arrow)
        self.content.setVisible(expanded)


class AdvancedPanel(Collapsible):
    """Editors for every field of `sections` that is not in `exclude`, in a collapsible box.

    Parameters
    ----------
    sections
        Top-level keys of `model` to include (``["data"]``), or None for every
        top-level key not in `others` (new sections land here).
    exclude
        Dotted keys shown by visible widgets elsewhere.
    model
        The root config model (``Config``; a test may pass a model with extra fields).
    others
        With ``sections=None``: top-level keys that other panels show.
    title
        The collapsible's title.

    Attributes
    ----------
    editors
        ``{dotted key: Editor}`` of every generated field.
    """

    def __init__(
        self,
        sections: Iterable[str] | None,
        exclude: Iterable[str] = (),
        model: type[BaseModel] | None = None,
        others: Iterable[str] = (),
        title: str = "Advanced",
        parent: QWidget | None = None,
    ) -> None:
        if model is None:
            from napari_unet.engine.config import Config

            model = Config
        self.model = model
        self.excluded = set(exclude)
        self.editors: dict[str, Editor] = {}
        fields = model.model_fields
        names = list(sections) if sections is not None else [n for n in fields if n not in others]
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 0, 0, 0)
        loose = QFormLayout()  # root scalars (``output``)
        for name in names:
            info = fields[name]
            if is_section(info.annotation):
                box = self._group(info.annotation, name, name)
                if box is not None:
                    layout.addWidget(box)
            elif name not in self.excluded:
                self._add_field(loose, name, info)
        if loose.rowCount():
            box = QGroupBox("run")
            box.setLayout(loose)
            layout.addWidget(box)
        super().__init__(title, body, expanded=False, parent=parent)
        self.set_defaults()
        self.setVisible(bool(self.editors))

    def _group(self, model: type[BaseModel], key: str, title: str) -> QGroupBox | None:
        """A group box of the section's editors (None if all of them are shown elsewhere)."""
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for name, info in model.model_fields.items():
            child = f"{key}.{name}"
            if is_section(info.annotation):
                sub = self._group(info.annotation, child, field_label(name))
                if sub is not None:
                    form.addRow(sub)
            elif child not in self.excluded:
                self._add_field(form, child, info)
        return box if form.rowCount() else None

    def _add_field(self, form: QFormLayout, key: str, info: Any) -> None:
        editor = make_editor(info.annotation, info, key)
        tooltip = field_tooltip(key, info)
        editor.widget.setToolTip(tooltip)
        if isinstance(editor.widget, QGroupBox):  # an optional section titles itself
            form.addRow(editor.widget)
        else:
            form.addRow(field_label(key.rpartition(".")[2]), editor.widget)
            label = form.labelForField(editor.widget)
            if label is not None:
                label.setToolTip(tooltip)
        self.editors[key] = editor

    def set_defaults(self) -> None:
        """Show the model's defaults in every editor."""
        defaults = self.model().model_dump(mode="json")
        for key, editor in self.editors.items():
            node: Any = defaults
            for part in key.split("."):
                node = node[part]
            editor.set(node)

    def on_change(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(key)`` when the user edits a field."""
        for key, editor in self.editors.items():
            editor.on_change(lambda key=key: callback(key))
