"""Adapting napari layers to engine inputs and engine outputs back to layers.

Everything here runs on the main (Qt) thread and is cheap: shapes are checked
without loading lazy data, and arrays handed to workers are copies (or lazy
arrays), so that painting on a layer cannot change data a worker is reading.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.engine.errors import UserInputError

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

__all__ = [
    "add_or_update_layer",
    "check_same_grid",
    "current_slice",
    "default_model_dir",
    "layer_choices",
    "layer_in_viewer",
    "layer_stack_shape",
    "require_layer",
    "safe_name",
    "snapshot",
]


def layer_choices(viewer: napari.Viewer, kinds: Iterable[type]) -> list[tuple[str, Any]]:
    """``(name, layer)`` pairs of the viewer's layers of the given types, in
    the order of `kinds` (e.g. Labels before Image for a mask picker)."""
    choices: list[tuple[str, Any]] = []
    for kind in kinds:
        choices.extend((layer.name, layer) for layer in viewer.layers if isinstance(layer, kind))
    return choices


def layer_in_viewer(viewer: napari.Viewer, layer: Layer | None) -> bool:
    """True if `layer` is (still) one of the viewer's layers."""
    return layer is not None and any(layer is other for other in viewer.layers)


def require_layer(layer: Layer | None, what: str) -> Layer:
    """`layer`, or a UserInputError that says which picker is empty."""
    if layer is None:
        raise UserInputError(f"choose {what} first (no layer is selected)")
    return layer


def _level0(layer: Layer) -> Any:
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


def layer_stack_shape(layer: Layer) -> tuple[int, int, int]:
    """The ``(Z, Y, X)`` shape the engine will see, without loading the data.

    Raises
    ------
    UserInputError
        If the layer is not a 2D image or a 3D stack (colour is allowed).
    """
    shape = tuple(int(s) for s in _level0(layer).shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    squeezed = shape
    while len(squeezed) > 3 and 1 in squeezed[:-2]:
        index = squeezed.index(1)
        squeezed = squeezed[:index] + squeezed[index + 1 :]
    if len(squeezed) == 2:
        squeezed = (1, *squeezed)
    if len(squeezed) != 3:
        raise UserInputError(
            f"layer {layer.name!r} has shape {shape}; expected a 2D image or a (Z, Y, X) stack"
        )
    return squeezed  # type: ignore[return-value]


def check_same_grid(image: Layer, mask: Layer) -> None:
    """Raise UserInputError unless `image` and `mask` have one (Z, Y, X) shape."""
    from napari_unet.engine.io.stacks import check_pair

    ishape, mshape = layer_stack_shape(image), layer_stack_shape(mask)
    check_pair(
        np.broadcast_to(np.uint8(0), ishape),
        np.broadcast_to(np.uint8(0), mshape),
        f"layer {image.name!r}",
        f"layer {mask.name!r}",
    )


def snapshot(layer: Layer) -> Any:
    """Data for a worker: a copy of in-memory data, lazy data as it is."""
    data = _level0(layer)
    if isinstance(data, np.ndarray):
        return data.copy()
    return data


def current_slice(viewer: napari.Viewer, layer: Layer) -> int:
    """Index of the slice of `layer` shown by the viewer (0 for a 2D layer)."""
    shape = layer_stack_shape(layer)
    step = viewer.dims.current_step
    offset = viewer.dims.ndim - len(_level0(layer).shape)
    axis = max(offset, 0)
    if shape[0] == 1 or axis >= len(step):
        return 0
    return int(min(max(step[axis], 0), shape[0] - 1))


def add_or_update_layer(
    viewer: napari.Viewer,
    name: str,
    data: np.ndarray,
    layer_type: str,
    **kwargs: Any,
) -> tuple[Layer, bool]:
    """Replace the data of the layer called `name` (same type) or add a new one.

    Returns
    -------
    layer, updated
        The layer and whether it existed already.
    """
    from napari.layers import Image, Labels

    kind = {"image": Image, "labels": Labels}[layer_type]
    existing = viewer.layers[name] if name in viewer.layers else None
    if isinstance(existing, kind):
        existing.data = data
        for key in ("contrast_limits",):
            if key in kwargs:
                setattr(existing, key, kwargs[key])
        return existing, True
    add = viewer.add_image if layer_type == "image" else viewer.add_labels
    if existing is not None:  # same name, other type: napari will suffix the name
        kwargs["name"] = f"{name} [{layer_type}]"
    else:
        kwargs["name"] = name
    return add(data, **kwargs), False


def safe_name(name: str) -> str:
    """A file-name-safe version of a layer name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return cleaned or "unet"


def default_model_dir(parent: str | Path, image_name: str) -> Path:
    """``<parent>/<image name>-<YYYYmmdd-HHMMSS>`` (with a suffix if it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(parent).expanduser() / f"{safe_name(image_name)}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
