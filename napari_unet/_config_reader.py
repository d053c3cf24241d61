"""npe2 reader for U-Net configs: dropping a ``*.yaml``/``*.yml`` on napari loads it into
the open U-Net dock (as its "Load config…" button does).

The reader adds no layer (it returns napari's "no layers" sentinel ``[(None,)]``);
the dock loads the file right after napari's open call returns, so that it may
ask whether to open the config's data files as layers. Without an open U-Net dock
a notification says how to open one. Imports neither Qt nor TensorFlow until a
config is dropped (and never TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_SUFFIXES", "get_config_reader", "load_dropped_config"]

CONFIG_SUFFIXES = (".yaml", ".yml")

_NO_LAYERS: list[tuple[Any, ...]] = [(None,)]


def get_config_reader(path: str | Sequence[str]) -> Callable[..., list[Any]] | None:
    """The reader for one YAML file, else None (napari then asks other plugins)."""
    if not isinstance(path, (str, Path)):
        if len(path) != 1:
            return None
        path = path[0]
    if Path(str(path)).suffix.lower() not in CONFIG_SUFFIXES:
        return None
    return load_dropped_config


def load_dropped_config(path: str | Sequence[str]) -> list[Any]:
    """Load the dropped config into the U-Net dock of the current viewer.

    Returns
    -------
    list
        ``[(None,)]``: no layers (the dock may open the config's data itself).
    """
    from napari.utils.notifications import show_info

    path = str(path if isinstance(path, (str, Path)) else path[0])
    dock = _target_dock()
    if dock is None:
        show_info(
            f"{Path(path).name} looks like a U-Net config: open the dock "
            "(Plugins > napari U-Net > U-Net) and drop it again, or use its Load config… button"
        )
        return _NO_LAYERS
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: dock.load_config(path))
    return _NO_LAYERS


def _target_dock() -> Any:
    """The open U-Net dock of the current viewer, else the newest one, else None."""
    import napari

    from napari_unet.widgets.dock import open_docks

    docks = open_docks()
    if not docks:
        return None
    current = napari.current_viewer()
    for dock in reversed(docks):
        if getattr(dock.viewer, "__wrapped__", dock.viewer) is current:
            return dock
    return docks[-1]
