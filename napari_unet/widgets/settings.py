"""Widget values <-> engine :class:`~napari_unet.engine.config.Config`, in one place.

Every config field the dock shows is a :class:`Bound`: a dotted key and the
widget that shows it (a hand-made widget on a tab, or a generated editor of an
Advanced section, see :mod:`.advanced_panel`). :func:`build_config` starts from
the dock's base config (the one loaded from YAML, else the defaults) and puts
every bound widget's value over it, so a field without a widget is never lost.
A bound widget that still shows the value it was loaded with gives back the
exact loaded value (a spin box's rounding cannot change a saved config).

Tests (and power users in the napari console) can override any field with
dotted keys in ``dock.config_overrides``, e.g. ``{"model.depth": 2}``; an
override of a model field replaces the preset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari_unet.engine.config import MODEL_PRESETS, Config, PredictConfig
from napari_unet.engine.errors import UserInputError

if TYPE_CHECKING:
    from .dock import UNetDock

__all__ = [
    "CUSTOM_PRESET",
    "Bound",
    "apply_overrides",
    "build_config",
    "build_predict_config",
    "config_values",
    "editor_binding",
    "set_dotted",
    "visible_bindings",
    "wire_model_preset",
]

#: The preset combo's entry for a network set field by field.
CUSTOM_PRESET = "custom"


class Bound:
    """One config field shown by one widget.

    Parameters
    ----------
    key
        Dotted config key (``"train.epochs"``).
    get, set
        Read the widget's value as a config value / show a config value.
    connect
        ``connect(callback)``: call `callback()` when the widget changes.
    """

    def __init__(
        self,
        key: str,
        get: Callable[[], Any],
        set: Callable[[Any], None],
        connect: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.key = key
        self._get, self._set, self._connect = get, set, connect
        self._loaded: tuple[Any, Any] | None = None  # (config value, widget value shown)

    def read(self) -> Any:
        """The widget's value; the exact loaded value while the widget still shows it."""
        value = self._get()
        if self._loaded is not None and _same(value, self._loaded[1]):
            return self._loaded[0]
        return value

    def load(self, value: Any) -> None:
        """Show a value from a loaded config and remember it exactly.

        If the widget cannot show it (the error propagates), the loaded value is
        still what :meth:`read` gives until the user changes the widget.
        """
        try:
            self._set(value)
        finally:
            self._loaded = (value, self._get())

    def show(self, value: Any) -> None:
        """Show `value` as if the user had entered it."""
        self._set(value)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when the widget's value changes."""
        if self._connect is not None:
            self._connect(callback)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _magic(key: str, widget: Any, to_config: Any = None, from_config: Any = None) -> Bound:
    """A Bound over a magicgui value widget (number ranges widen to show any valid value)."""
    to_config = to_config or (lambda v: v)
    from_config = from_config or (lambda v: v)

    def set_value(value: Any) -> None:
        shown = from_config(value)
        if isinstance(shown, (int, float)) and not isinstance(shown, bool):
            if hasattr(widget, "min") and shown < widget.min:
                widget.min = shown
            if hasattr(widget, "max") and shown > widget.max:
                widget.max = shown
        widget.value = shown

    return Bound(
        key,
        lambda: to_config(widget.value),
        set_value,
        lambda callback: widget.changed.connect(lambda *_: callback()),
    )


def _pair(key: str, first: Any, second: Any, kind: type = float) -> Bound:
    """A Bound over two magicgui widgets holding a ``(low, high)`` pair."""
    parts = (_magic(key, first), _magic(key, second))

    def set_value(value: Any) -> None:
        for part, item in zip(parts, value):
            part.show(kind(item))

    def connect(callback: Callable[[], None]) -> None:
        for part in parts:
            part.on_change(callback)

    return Bound(key, lambda: [kind(part.read()) for part in parts], set_value, connect)


def editor_binding(key: str, editor: Any) -> Bound:
    """A Bound over a generated (or hand-placed) :class:`~.config_fields.Editor`."""
    return Bound(key, editor.get, editor.set, editor.on_change)


def visible_bindings(dock: UNetDock) -> list[Bound]:
    """The fields shown by the tabs' own widgets, bound to their keys."""
    d, a, t, p = dock.data_tab, dock.augment_tab, dock.train_tab, dock.predict_tab
    return [
        _magic("data.val_fraction", d.val_fraction, float),
        _magic("data.normalization", d.normalization),
        _pair("data.percentiles", d.percentile_low, d.percentile_high),
        _magic("train.patch_size", d.patch_size, int),
        _magic("augment.enabled", a.enabled),
        _magic("augment.flips", a.flips),
        _magic("augment.rot90", a.rot90),
        _magic("augment.affine.enabled", a.affine_enabled),
        _magic("augment.affine.probability", a.affine_probability),
        _magic("augment.affine.rotation_degrees", a.rotation),
        _magic("augment.affine.shift", a.shift),
        _magic("augment.affine.shear_degrees", a.shear),
        _pair("augment.affine.zoom", a.zoom_min, a.zoom_max),
        _magic("augment.elastic.enabled", a.elastic_enabled),
        _magic("augment.elastic.probability", a.elastic_probability),
        _magic("augment.elastic.grid_points", a.grid_points, int),
        _magic("augment.elastic.sigma_pixels", a.sigma),
        _magic("augment.intensity.enabled", a.intensity_enabled),
        _magic("augment.intensity.brightness", a.brightness),
        _pair("augment.intensity.contrast", a.contrast_min, a.contrast_max),
        _pair("augment.intensity.gamma", a.gamma_min, a.gamma_max),
        _magic("augment.intensity.noise_std", a.noise_std),
        _magic("augment.intensity.noise_probability", a.noise_probability),
        _magic("augment.intensity.blur_sigma", a.blur_sigma),
        _magic("augment.intensity.blur_probability", a.blur_probability),
        _magic(
            "model.preset",
            t.preset,
            lambda v: None if v == CUSTOM_PRESET else v,
            lambda v: v or CUSTOM_PRESET,
        ),
        _magic("train.epochs", t.epochs, int),
        _magic("train.steps_per_epoch", t.steps_per_epoch, int),
        editor_binding("train.learning_rate", t.learning_rate),
        _magic("train.batch_size", t.batch_size, int),
        _magic("train.loss", t.loss),
        _magic(
            "train.max_minutes",
            t.max_minutes,
            lambda v: float(v) if v > 0 else None,
            lambda v: 0.0 if v is None else float(v),
        ),
        _magic("train.schedule.kind", t.schedule_kind),
        _magic("predict.tile_size", p.tile_size, int),
        _magic("predict.tta", p.tta, bool),
        _magic("predict.threshold", p.threshold, float),
    ]


def wire_model_preset(dock: UNetDock) -> None:
    """Choosing a preset shows its network fields; editing one of them selects "custom"."""
    bindings = dock.bindings
    preset = dock.train_tab.preset
    fields = sorted({f for values in MODEL_PRESETS.values() for f in values})

    def preset_chosen(*_: Any) -> None:
        if dock.loading_config or preset.value == CUSTOM_PRESET:
            return
        for name, value in MODEL_PRESETS[preset.value].items():
            if f"model.{name}" in bindings:
                bindings[f"model.{name}"].show(value)

    def field_edited() -> None:
        if dock.loading_config or preset.value == CUSTOM_PRESET:
            return
        chosen = MODEL_PRESETS[preset.value]
        if any(
            f"model.{name}" in bindings and bindings[f"model.{name}"].read() != chosen[name]
            for name in chosen
        ):
            preset.value = CUSTOM_PRESET

    preset.changed.connect(preset_chosen)
    for name in fields:
        if f"model.{name}" in bindings:
            bindings[f"model.{name}"].on_change(field_edited)
    preset_chosen()


def set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``values["a"]["b"] = value`` for ``dotted = "a.b"`` (creating dicts on the way)."""
    node = values
    *parents, leaf = dotted.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set dotted keys (``"train.epochs"``) in a nested dict; model overrides drop the preset."""
    for dotted, value in (overrides or {}).items():
        set_dotted(values, dotted, value)
        parents = dotted.split(".")[:-1]
        if parents == ["model"] and not dotted.endswith(".preset"):
            values["model"]["preset"] = None
    return values


def config_values(dock: UNetDock) -> dict[str, Any]:
    """The base config with every bound widget's value (and the overrides) over it."""
    values = dock.base_config.to_dict()
    for bound in dock.bindings.values():
        set_dotted(values, bound.key, bound.read())
    predict = values["predict"]
    if 2 * int(predict.get("overlap", 0)) >= int(predict.get("tile_size", 1)):
        predict["overlap"] = int(predict["tile_size"]) // 4  # smaller tiles: a smaller overlap
    return apply_overrides(values, dock.config_overrides)


def build_config(dock: UNetDock, output: str | None = None) -> Config:
    """The engine Config for the dock's current settings.

    Parameters
    ----------
    dock
        The U-Net dock.
    output
        Model folder to write (default: the base config's ``output``).

    Raises
    ------
    UserInputError
        If the combination is invalid (e.g. a patch size that is not a
        multiple of 2**depth), with the validation message.
    """
    values = config_values(dock)
    if output is not None:
        values["output"] = output
    return _validate(Config, values)


def build_predict_config(dock: UNetDock) -> PredictConfig:
    """Tiling, TTA and threshold for prediction from the Predict tab (plus overrides)."""
    return _validate(PredictConfig, config_values(dock)["predict"])


def _validate(kind: type, values: dict[str, Any]) -> Any:
    try:
        return kind.model_validate(values)
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        if callable(errors):
            parts = []
            for err in errors():
                where = ".".join(str(p) for p in err.get("loc", ()))
                msg = str(err.get("msg", "")).removeprefix("Value error, ")
                parts.append(f"{where}: {msg}" if where else msg)
            raise UserInputError("invalid settings: " + "; ".join(parts)) from None
        raise UserInputError(f"invalid settings: {exc}") from None
