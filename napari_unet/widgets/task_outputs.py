"""napari layers for the predictions of multiclass and regression models.

The dock shows a binary prediction as it always has (a probability image and a
thresholded Labels layer). For the other tasks (``model.task``):

* multiclass: one Labels layer ``<image> classes`` of class indices, one fixed colour per
  class (:func:`class_colormap`; index 0, the background, transparent), the class names
  in the layer's metadata and features; each class can be exported alone
  (:func:`export_prediction` with ``class_name``) or taken as its own Labels layer
  (:func:`add_class_layer`);
* regression: one float32 Image layer ``<image> prediction`` (the predicted values, in
  the units of the normalized training target), contrast from its 1st-99th percentiles.

:func:`show_task_prediction` is what the Predict tab calls with the engine's
``Prediction`` (``prediction.task`` says which). The writing goes through the engine's
:func:`~napari_unet.engine.io.task_export.write_task_prediction`, the CLI's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CLASS_COLOURS",
    "add_class_layer",
    "class_colormap",
    "export_prediction",
    "show_task_prediction",
]

#: Colours of classes 1, 2, ... (class 0, the background, is transparent).
CLASS_COLOURS = (
    "#ffd700",  # gold
    "#ff00ff",  # magenta
    "#00bfff",  # deep sky blue
    "#32cd32",  # lime green
    "#ff4500",  # orange red
    "#9370db",  # medium purple
    "#00ced1",  # dark turquoise
    "#ff69b4",  # hot pink
)


def class_colormap(classes: list[str] | tuple[str, ...]) -> Any:
    """A napari ``DirectLabelColormap``: class k > 0 in ``CLASS_COLOURS[k - 1]`` (cycled)."""
    from napari.utils.colormaps import DirectLabelColormap

    colours: dict[Any, str] = {None: "transparent", 0: "transparent"}
    for index in range(1, len(classes)):
        colours[index] = CLASS_COLOURS[(index - 1) % len(CLASS_COLOURS)]
    return DirectLabelColormap(color_dict=colours)


def _layer_data(array: np.ndarray, two_d: bool) -> np.ndarray:
    return array[0] if two_d and array.shape[0] == 1 else array


def show_task_prediction(
    viewer: Any,
    prediction: Any,
    name: str,
    placement: dict[str, Any] | None = None,
    two_d: bool = False,
) -> Any:
    """Add (or update) the layer of a multiclass or regression prediction.

    Parameters
    ----------
    viewer
        The napari viewer (or the proxy napari hands plugins).
    prediction
        The engine's ``Prediction`` (``task`` multiclass or regression).
    name
        The predicted image's layer name.
    placement
        ``scale``/``translate`` of the image layer, applied to the new layer.
    two_d
        The image was one 2D slice: show a 2D layer.

    Returns
    -------
    napari.layers.Layer
        The Labels layer (multiclass) or Image layer (regression).
    """
    from .layer_utils import add_or_update_layer

    placement = dict(placement or {})
    if prediction.task == "multiclass":
        labels = _layer_data(prediction.labels(), two_d)
        if placement.get("scale") is not None and len(placement["scale"]) != labels.ndim:
            placement = {}
        classes = list(prediction.classes or ())
        layer, _ = add_or_update_layer(
            viewer, f"{name} classes", labels, "labels", opacity=0.5, **placement
        )
        layer.colormap = class_colormap(classes)
        layer.metadata["classes"] = classes
        layer.features = {"index": list(range(len(classes))), "class": classes}
        return layer
    if prediction.task == "regression":
        values = _layer_data(np.asarray(prediction.probability, dtype=np.float32), two_d)
        if placement.get("scale") is not None and len(placement["scale"]) != values.ndim:
            placement = {}
        low, high = np.percentile(values, (1.0, 99.0)) if values.size else (0.0, 1.0)
        limits = (float(low), float(high) if high > low else float(low) + 1.0)
        layer, _ = add_or_update_layer(
            viewer,
            f"{name} prediction",
            values,
            "image",
            colormap="gray",
            contrast_limits=limits,
            **placement,
        )
        return layer
    raise ValueError(f"show_task_prediction shows multiclass and regression, not {prediction.task}")


def add_class_layer(
    viewer: Any, prediction: Any, class_name: str | int, name: str, two_d: bool = False
) -> Any:
    """One class of a multiclass prediction as its own ``{0, 1}`` Labels layer."""
    from .layer_utils import add_or_update_layer

    index = prediction.class_index(class_name)
    label = (prediction.classes or ())[index]
    mask = _layer_data(prediction.class_mask(index), two_d)
    layer, _ = add_or_update_layer(viewer, f"{name} {label}", mask, "labels", opacity=0.5)
    colour = CLASS_COLOURS[(max(index, 1) - 1) % len(CLASS_COLOURS)]
    from napari.utils.colormaps import DirectLabelColormap

    layer.colormap = DirectLabelColormap(
        color_dict={None: "transparent", 0: "transparent", 1: colour}
    )
    return layer


def export_prediction(
    prediction: Any,
    output: str | Path,
    class_name: str | int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a prediction as the CLI's ``predict --output`` would (one class alone with
    `class_name`).

    Returns
    -------
    Path
        The written file or folder.
    """
    from napari_unet.engine.io.task_export import write_task_prediction

    name = None if class_name is None else str(class_name)
    path, _ = write_task_prediction(
        output, prediction, probabilities=probabilities, class_name=name, overwrite=overwrite
    )
    return path
