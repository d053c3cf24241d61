"""Editors generated from the pydantic config models: one Qt widget per field.

:func:`make_editor` maps a field's type to a widget: ``bool`` -> check box,
``int``/``float`` -> spin box limited by the field's ``ge``/``gt``/``le``/``lt``,
``Literal`` -> combo box, ``str`` -> line edit, a pair (``tuple[float, float]``)
-> two spin boxes, ``X | None`` -> a check box in front of the editor of ``X``,
lists -> a comma-separated line edit, a nested optional section -> a checkable
group of its own editors, anything else -> a YAML line edit. The field's
``description`` is the tooltip. A new config field therefore gets a widget
without any hand-written code (see :mod:`.advanced_panel`).

Every editor has ``get()`` (the value for the config; raises
:class:`~napari_unet.engine.errors.UserInputError` for unparsable text),
``set(value)`` and ``on_change(callback)``.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from qtpy.QtGui import QValidator
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from napari_unet.engine.errors import UserInputError

__all__ = ["Editor", "field_label", "field_tooltip", "is_section", "make_editor", "optional_of"]

_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e12


def optional_of(annotation: Any) -> Any | None:
    """``X`` for ``X | None`` (or ``Optional[X]``), else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0]
    return None


def is_section(annotation: Any) -> bool:
    """True for a nested config model (a group of fields)."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def field_label(name: str) -> str:
    """``"max_lr"`` -> ``"max lr"``."""
    return name.replace("_", " ")


def field_tooltip(key: str, info: FieldInfo) -> str:
    """The field's description and its dotted config key."""
    return f"{info.description}\n({key})" if info.description else key


def _bounds(info: FieldInfo, integer: bool) -> tuple[float, float]:
    """The (inclusive) range allowed by the field's ge/gt/le/lt constraints."""
    low, high = (-_INT_LIMIT, _INT_LIMIT) if integer else (-_FLOAT_LIMIT, _FLOAT_LIMIT)

    def gap(bound: float) -> float:  # the smallest step past a strict bound
        return 1 if integer else max(abs(float(bound)) * 1e-9, 1e-12)

    for item in info.metadata:
        if (bound := getattr(item, "ge", None)) is not None:
            low = max(low, bound)
        if (bound := getattr(item, "gt", None)) is not None:
            low = max(low, bound + gap(bound))
        if (bound := getattr(item, "le", None)) is not None:
            high = min(high, bound)
        if (bound := getattr(item, "lt", None)) is not None:
            high = min(high, bound - gap(bound))
    return low, high


class Editor:
    """A widget editing one config value.

    Attributes
    ----------
    widget
        The Qt widget to place in a form.
    """

    widget: QWidget

    def get(self) -> Any:
        """The value for the config."""
        raise NotImplementedError

    def set(self, value: Any) -> None:
        """Show `value`."""
        raise NotImplementedError

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever the user changes the value."""
        raise NotImplementedError

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable the widget."""
        self.widget.setEnabled(enabled)


class _BoolEditor(Editor):
    def __init__(self) -> None:
        self.widget = QCheckBox()

    def get(self) -> bool:
        return self.widget.isChecked()

    def set(self, value: Any) -> None:
        self.widget.setChecked(bool(value))

    def on_change(self, callback: Callable[[], None]) -> None:
        self.widget.toggled.connect(lambda *_: callback())


class FloatSpin(QDoubleSpinBox):
    """A float spin box that shows ``%g`` (``0.001``, ``1e-05``) and accepts exponents."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(12)
        self.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:
        """``%.6g`` of the value."""
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:
        """The float of `text` (the last valid value if it does not parse)."""
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> tuple[Any, str, int]:
        """Accept anything that is, or may become, a float within the range."""
        try:
            value = float(text)
        except ValueError:
            return (QValidator.State.Intermediate, text, pos)
        if self.minimum() <= value <= self.maximum():
            return (QValidator.State.Acceptable, text, pos)
        return (QValidator.State.Intermediate, text, pos)


class _NumberEditor(Editor):
    def __init__(self, info: FieldInfo, integer: bool) -> None:
        low, high = _bounds(info, integer)
        self.integer = integer
        if integer:
            self.widget = QSpinBox()
            self.widget.setRange(int(max(low, -_INT_LIMIT)), int(min(high, _INT_LIMIT)))
            self.widget.setKeyboardTracking(False)
        else:
            self.widget = FloatSpin()
            self.widget.setRange(float(low), float(high))

    def get(self) -> int | float:
        return int(self.widget.value()) if self.integer else float(self.widget.value())

    def set(self, value: Any) -> None:
        self.widget.setValue(int(value) if self.integer else float(value))

    def on_change(self, callback: Callable[[], None]) -> None:
        self.widget.valueChanged.connect(lambda *_: callback())


class _ChoiceEditor(Editor):
    def __init__(self, choices: tuple[Any, ...]) -> None:
        self.widget = QComboBox()
        for choice in choices:
            self.widget.addItem(str(choice), choice)

    def get(self) -> Any:
        return self.widget.currentData()

    def set(self, value: Any) -> None:
        index = self.widget.findData(value)
        if index < 0:
            raise UserInputError(f"{value!r} is not one of the choices")
        self.widget.setCurrentIndex(index)

    def on_change(self, callback: Callable[[], None]) -> None:
        self.widget.currentIndexChanged.connect(lambda *_: callback())


class _TextEditor(Editor):
    """A line edit; `parse`/`format` convert between text and value."""

    def __init__(
        self,
        parse: Callable[[str], Any],
        format: Callable[[Any], str],
        placeholder: str = "",
    ) -> None:
        self.widget = QLineEdit()
        self.widget.setPlaceholderText(placeholder)
        self._parse, self._format = parse, format

    def get(self) -> Any:
        return self._parse(self.widget.text().strip())

    def set(self, value: Any) -> None:
        self.widget.setText(self._format(value))

    def on_change(self, callback: Callable[[], None]) -> None:
        self.widget.editingFinished.connect(callback)


class _PairEditor(Editor):
    def __init__(self, first: Editor, second: Editor) -> None:
        self.parts = (first, second)
        self.widget = QWidget()
        layout = QHBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in self.parts:
            layout.addWidget(part.widget)

    def get(self) -> list[Any]:
        return [part.get() for part in self.parts]

    def set(self, value: Any) -> None:
        for part, item in zip(self.parts, value):
            part.set(item)

    def on_change(self, callback: Callable[[], None]) -> None:
        for part in self.parts:
            part.on_change(callback)


class _OptionalEditor(Editor):
    """A check box ("set") in front of the editor of the value; unchecked = None."""

    def __init__(self, inner: Editor) -> None:
        self.inner = inner
        self.check = QCheckBox()
        self.check.setToolTip("unchecked: none (the default behaviour)")
        self.widget = QWidget()
        layout = QHBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.check)
        layout.addWidget(inner.widget, stretch=1)
        self.check.toggled.connect(inner.widget.setEnabled)
        inner.widget.setEnabled(False)

    def get(self) -> Any:
        return self.inner.get() if self.check.isChecked() else None

    def set(self, value: Any) -> None:
        self.check.setChecked(value is not None)
        if value is not None:
            self.inner.set(value)

    def on_change(self, callback: Callable[[], None]) -> None:
        self.check.toggled.connect(lambda *_: callback())
        self.inner.on_change(callback)


class _SectionEditor(Editor):
    """An optional nested section: a checkable group of its fields' editors."""

    def __init__(self, model: type[BaseModel], key: str, title: str) -> None:
        self.widget = QGroupBox(title)
        self.widget.setCheckable(True)
        self.widget.setChecked(False)
        form = QFormLayout(self.widget)
        self.editors: dict[str, Editor] = {}
        for name, info in model.model_fields.items():
            editor = make_editor(info.annotation, info, f"{key}.{name}")
            editor.widget.setToolTip(field_tooltip(f"{key}.{name}", info))
            form.addRow(field_label(name), editor.widget)
            self.editors[name] = editor
        self._model = model

    def get(self) -> dict[str, Any] | None:
        if not self.widget.isChecked():
            return None
        return {name: editor.get() for name, editor in self.editors.items()}

    def set(self, value: Any) -> None:
        self.widget.setChecked(value is not None)
        if value is None:  # show the section's defaults, if it has them for every field
            try:
                value = self._model()
            except ValueError:
                return
        values = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        for name, editor in self.editors.items():
            if name in values:
                editor.set(values[name])

    def on_change(self, callback: Callable[[], None]) -> None:
        self.widget.toggled.connect(lambda *_: callback())
        for editor in self.editors.values():
            editor.on_change(callback)


def _list_parser(kind: type, key: str, optional: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if not text:
            return None if optional else []
        try:
            return [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise UserInputError(
                f"{key}: {text!r} is not a comma-separated list of {kind.__name__}"
            ) from None

    return parse


def _yaml_parser(key: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            raise UserInputError(f"{key}: {text!r} is not a YAML value") from None

    return parse


def _yaml_text(value: Any) -> str:
    if value is None:
        return ""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def make_editor(annotation: Any, info: FieldInfo, key: str) -> Editor:
    """The editor for one config field.

    Parameters
    ----------
    annotation
        The field's (resolved) type.
    info
        Its pydantic FieldInfo (constraints, description).
    key
        Its dotted config key (for messages).
    """
    inner = optional_of(annotation)
    if inner is not None:
        if is_section(inner):
            return _SectionEditor(inner, key, field_label(key.rpartition(".")[2]))
        if inner is str:
            return _TextEditor(lambda t: t or None, lambda v: v or "", "none")
        if get_origin(inner) is list:
            kind = (get_args(inner) or (str,))[0]
            return _TextEditor(
                _list_parser(kind, key, True), lambda v: ", ".join(map(str, v or [])), "none"
            )
        return _OptionalEditor(make_editor(inner, info, key))
    if annotation is bool:
        return _BoolEditor()
    if annotation in (int, float):
        return _NumberEditor(info, integer=annotation is int)
    if get_origin(annotation) is Literal:
        return _ChoiceEditor(get_args(annotation))
    if annotation is str:
        return _TextEditor(lambda t: t, lambda v: v or "")
    args = get_args(annotation)
    if get_origin(annotation) is tuple and len(args) == 2 and all(a in (int, float) for a in args):
        bare = FieldInfo(annotation=args[0])
        return _PairEditor(make_editor(args[0], bare, key), make_editor(args[1], bare, key))
    if get_origin(annotation) is list and args and args[0] in (int, float, str):
        return _TextEditor(
            _list_parser(args[0], key, False), lambda v: ", ".join(map(str, v or []))
        )
    return _TextEditor(_yaml_parser(key), _yaml_text, "YAML value")
