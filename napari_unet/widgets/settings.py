"""Widget values -> engine :class:`~napari_unet.engine.config.Config`, in one place.

Every setting shown in the dock is read here and nowhere else. Tests (and
power users in the napari console) can override any field with dotted keys
in ``dock.config_overrides``, e.g. ``{"model.depth": 2, "model.base_filters": 4}``;
an override of a model field replaces the preset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_unet.engine.config import Config, PredictConfig
from napari_unet.engine.errors import UserInputError

if TYPE_CHECKING:
    from .dock import UNetDock

__all__ = ["apply_overrides", "build_config", "build_predict_config", "widget_values"]


def widget_values(dock: UNetDock) -> dict[str, Any]:
    """The Config as a nested dict of the dock's current widget values."""
    d, a, t, p = dock.data_tab, dock.augment_tab, dock.train_tab, dock.predict_tab
    max_minutes = float(t.max_minutes.value)
    tile = int(p.tile_size.value)
    return {
        "data": {
            "val_fraction": float(d.val_fraction.value) if not d.explicit_validation else 0.0,
            "normalization": d.normalization.value,
            "percentiles": [float(d.percentile_low.value), float(d.percentile_high.value)],
        },
        "augment": {
            "enabled": a.enabled.value,
            "flips": a.flips.value,
            "rot90": a.rot90.value,
            "affine": {
                "enabled": a.affine_enabled.value,
                "probability": a.affine_probability.value,
                "rotation_degrees": a.rotation.value,
                "shift": a.shift.value,
                "shear_degrees": a.shear.value,
                "zoom": [a.zoom_min.value, a.zoom_max.value],
            },
            "elastic": {
                "enabled": a.elastic_enabled.value,
                "probability": a.elastic_probability.value,
                "grid_points": a.grid_points.value,
                "sigma_pixels": a.sigma.value,
            },
            "intensity": {
                "enabled": a.intensity_enabled.value,
                "brightness": a.brightness.value,
                "contrast": [a.contrast_min.value, a.contrast_max.value],
                "gamma": [a.gamma_min.value, a.gamma_max.value],
                "noise_std": a.noise_std.value,
                "noise_probability": a.noise_probability.value,
                "blur_sigma": a.blur_sigma.value,
                "blur_probability": a.blur_probability.value,
            },
        },
        "model": {"preset": t.preset.value},
        "train": {
            "patch_size": int(d.patch_size.value),
            "epochs": int(t.epochs.value),
            "steps_per_epoch": int(t.steps_per_epoch.value),
            "learning_rate": float(t.learning_rate.value),
            "batch_size": int(t.batch_size.value),
            "loss": t.loss.value,
            "max_minutes": max_minutes if max_minutes > 0 else None,
            "tensorboard": True,
        },
        "predict": {
            "tile_size": tile,
            "overlap": min(PredictConfig().overlap, tile // 4),
            "tta": bool(p.tta.value),
            "threshold": float(p.threshold.value),
        },
    }


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set dotted keys (``"train.epochs"``) in a nested dict; model overrides drop the preset."""
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
        if parents == ["model"] and leaf != "preset":
            values["model"].pop("preset", None)
    return values


def build_config(dock: UNetDock, output: str | None = None) -> Config:
    """The engine Config for the dock's current settings.

    Parameters
    ----------
    dock
        The U-Net dock.
    output
        Model folder to write.

    Raises
    ------
    UserInputError
        If the combination is invalid (e.g. a patch size that is not a
        multiple of 2**depth), with the validation message.
    """
    values = apply_overrides(widget_values(dock), dock.config_overrides)
    if output is not None:
        values["output"] = output
    return _validate(Config, values)


def build_predict_config(dock: UNetDock) -> PredictConfig:
    """Tiling, TTA and threshold for prediction from the Predict tab (plus overrides)."""
    values = apply_overrides(widget_values(dock), dock.config_overrides)["predict"]
    return _validate(PredictConfig, values)


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
