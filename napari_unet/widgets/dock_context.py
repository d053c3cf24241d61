"""What a tab may use of the dock: :class:`DockContext`, and of the Predict tab: :class:`Predictor`.

The dock (:class:`~napari_unet.widgets.dock.UNetDock`) builds one DockContext
and hands it to every tab instead of itself, so a tab depends on these few
members only (and a test can build one from plain functions). Sibling tabs a
tab needs (the Data tab for Train and Augment, the Predict tab for Correct &
retrain) are passed to it explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import napari
    from qtpy.QtWidgets import QMainWindow

    from napari_unet.engine.config import Config, PredictConfig

    from .workers import Job, JobRegistry

__all__ = ["DockContext", "Predictor"]


@dataclass(frozen=True)
class DockContext:
    """The dock's shared state and services, as seen by its tabs.

    Attributes
    ----------
    viewer
        The napari viewer.
    jobs
        The registry of background jobs (stopped when the dock closes).
    status
        Show a one-line status under the tabs.
    model_dir
        The current model folder (trained here or loaded), or None.
    set_model_dir
        ``set_model_dir(folder, origin)``: make `folder` the current model;
        ``origin`` is ``"trained"`` (also offered on Predict) or ``"loaded"``.
    trained_dir
        The last model folder trained (or fine-tuned) here, or None.
    build_config
        ``build_config(output=None)``: the engine Config of every tab's settings.
    predict_config
        The PredictConfig of the Predict tab's settings.
    cached_model
        ``cached_model(folder)``: the LoadedModel of `folder` if still valid, else None.
    remember_model
        ``remember_model(folder, loaded)``: keep a LoadedModel for the next prediction.
    confirm_overwrite
        ``confirm_overwrite(target)``: may `target` be replaced (asks the user)?
    main_window
        The viewer's main window once the dock is docked in it, else None.
    set_value
        ``set_value(key, value)``: show `value` in the widget of the dotted config
        key (e.g. the learning-rate finder's suggestion), as if the user typed it.
    """

    viewer: napari.Viewer
    jobs: JobRegistry
    status: Callable[[str], None]
    model_dir: Callable[[], Path | None]
    set_model_dir: Callable[[Path, str], None]
    trained_dir: Callable[[], Path | None]
    build_config: Callable[..., Config]
    predict_config: Callable[[], PredictConfig]
    cached_model: Callable[[Path], Any]
    remember_model: Callable[[Path, Any], None]
    confirm_overwrite: Callable[[Path], bool]
    main_window: Callable[[], QMainWindow | None]
    set_value: Callable[[str, Any], None] = field(default=lambda key, value: None)


class Predictor(Protocol):
    """What the Correct & retrain tab uses of the Predict tab.

    Attributes
    ----------
    threshold
        The threshold slider (``.value``, ``.changed``).
    image
        The image-layer picker (``.value``).
    probability_layer
        The last ``<image> probability`` layer written, or None.
    edits
        The :class:`~.loop_edits.EditTracker` of the labels layers (which slices the
        user edited or reviewed; a new prediction keeps them).
    """

    threshold: Any
    image: Any
    probability_layer: Any
    edits: Any

    def predict(self) -> Job | None:
        """Predict the chosen image with the chosen model (None if it cannot start)."""
        ...
