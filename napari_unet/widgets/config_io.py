"""Load and save the dock's settings as the YAML config file the CLI reads.

:func:`load_into_dock` reads a config with the engine's
:func:`~napari_unet.engine.config.load_config` (``${NAPARI_UNET_DATA}`` and
relative paths resolved as for ``napari-unet train``), keeps it as the dock's
base config and shows its values in every bound widget; :func:`save_from_dock`
writes :meth:`UNetDock.build_config` with
:func:`~napari_unet.engine.config.save_config`. Fields no widget shows are
carried by the base config, so a load/save round trip loses nothing.

The data files a config names can be opened as layers and chosen on the Data
tab (:func:`open_config_data`); training then keeps those paths in the model
folder's ``config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QMessageBox

from napari_unet.engine.config import Config, load_config, save_config
from napari_unet.engine.errors import UserInputError

from . import notify
from .data_tab import VAL_LAYERS
from .layer_utils import same_layer

if TYPE_CHECKING:
    from .dock import UNetDock

__all__ = ["DATA_ROLES", "data_paths", "load_into_dock", "open_config_data", "save_from_dock"]

#: Data-tab picker -> ``data`` field of the config.
DATA_ROLES = {
    "image": "images",
    "mask": "masks",
    "val_image": "val_images",
    "val_mask": "val_masks",
}


def data_paths(config: Config) -> dict[str, str | None]:
    """``{"images": path or None, ...}`` of the config's data section."""
    return {key: getattr(config.data, key) for key in DATA_ROLES.values()}


def _dotted(values: dict[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]  # KeyError: a field the config does not have
    return node


def apply_config(dock: UNetDock, config: Config) -> list[str]:
    """Make `config` the dock's base config and show it in every bound widget.

    Returns
    -------
    list of str
        Keys whose value a widget could not show (the value is kept anyway).
    """
    values = config.to_dict()
    problems = []
    dock.loading_config = True
    try:
        dock.base_config = config
        for key, bound in dock.bindings.items():
            try:
                bound.load(_dotted(values, key))
            except KeyError:
                continue
            except (ValueError, TypeError, UserInputError):
                problems.append(key)
    finally:
        dock.loading_config = False
    dock.data_tab.show_config_data(data_paths(config))
    return problems


def load_into_dock(dock: UNetDock, path: str | Path) -> Config | None:
    """Load a YAML config into the dock (one notification on any problem).

    Parameters
    ----------
    dock
        The U-Net dock.
    path
        The YAML file (as for ``napari-unet train``).

    Returns
    -------
    Config or None
        The loaded config, or None if it could not be read (nothing changed).
    """
    try:
        config = load_config(Path(path).expanduser())
    except UserInputError as exc:
        notify.error(str(exc))
        return None
    problems = apply_config(dock, config)
    message = f"Loaded the settings of {Path(path).name}"
    if problems:
        message += f" (kept as loaded, not shown: {', '.join(problems)})"
    dock.status(message)
    existing = [p for p in data_paths(config).values() if p and Path(p).exists()]
    if existing and _want_layers(dock, existing):
        open_config_data(dock, config)
    return config


def _want_layers(dock: UNetDock, paths: list[str]) -> bool:
    """Open a config's data as layers? (``dock.open_config_layers``, else ask)."""
    if dock.open_config_layers is not None:
        return bool(dock.open_config_layers)
    names = "\n".join(Path(p).name for p in paths)
    answer = QMessageBox.question(
        dock,
        "Open the config's data?",
        f"The config names these data files:\n{names}\nOpen them as layers to train on?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    return answer == QMessageBox.StandardButton.Yes


def open_config_data(dock: UNetDock, config: Config | None = None) -> dict[str, Any]:
    """Open (or find among the layers) the config's data files and choose them on the Data tab.

    Parameters
    ----------
    dock
        The U-Net dock.
    config
        Default: the dock's base config.

    Returns
    -------
    dict
        ``{"image": layer, ...}`` of the roles that got a layer.
    """
    config = config or dock.base_config
    viewer = dock.viewer
    chosen: dict[str, Any] = {}
    for role, key in DATA_ROLES.items():
        path = getattr(config.data, key)
        if not path or not Path(path).exists():
            continue
        layer = _layer_from_file(viewer, path)
        if layer is None:
            try:
                opened = viewer.open(path, plugin="napari-unet")
            except Exception as exc:  # the reader notifies bad files itself
                notify.report_exception(exc, f"opening {path}")
                continue
            layer = opened[0] if opened else None
        if layer is not None:
            chosen[role] = layer
    data = dock.data_tab
    data.reset_choices()
    if "val_image" in chosen and "val_mask" in chosen:
        data.val_mode.value = VAL_LAYERS
    for role in DATA_ROLES:  # image before mask: the mask choices exclude the image
        picker = getattr(data, role)
        match = next((c for c in picker.choices if same_layer(c, chosen.get(role))), None)
        if match is not None:
            picker.value = match
    if chosen:
        names = ", ".join(f"{role} {layer.name!r}" for role, layer in chosen.items())
        dock.status(f"Data tab: {names}")
    return chosen


def _layer_from_file(viewer: Any, path: str) -> Any:
    """A layer of the viewer that was opened from `path`, or None."""
    target = Path(path).resolve()
    for layer in viewer.layers:
        source = getattr(getattr(layer, "source", None), "path", None)
        if source and Path(source).resolve() == target:
            return layer
    return None


def save_from_dock(dock: UNetDock, path: str | Path) -> Path | None:
    """Write the dock's settings as a YAML config (asking before replacing a file).

    Parameters
    ----------
    dock
        The U-Net dock.
    path
        Destination; ``.yaml`` is appended unless it ends in ``.yaml``/``.yml``.

    Returns
    -------
    Path or None
        The file written, or None (invalid settings, refused overwrite, write error).
    """
    target = Path(path).expanduser()
    if target.suffix.lower() not in (".yaml", ".yml"):
        target = target.with_name(target.name + ".yaml")
    try:
        config = dock.build_config()
    except UserInputError as exc:
        notify.error(str(exc))
        return None
    if target.exists() and not dock.confirm_overwrite(target):
        notify.warning(f"{target} exists; the settings were not saved")
        return None
    try:
        save_config(config, target)
    except (UserInputError, OSError) as exc:
        notify.error(f"cannot save the settings to {target}: {exc}")
        return None
    dock.status(f"Saved the settings to {target}")
    notify.info(f"Saved the settings to {target}")
    return target
