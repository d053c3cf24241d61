"""Adapting napari layers to engine inputs and engine outputs back to layers.

Everything here runs on the main (Qt) thread and is cheap: shapes are checked
without loading lazy data, and arrays handed to workers are copies (or lazy
arrays), so that painting on a layer cannot change data a worker is reading.

Layers are compared by napari's ``unique_id`` (:func:`same_layer`, :func:`layer_key`),
never with ``is``: a dock opened from the Plugins menu gets a proxy of the viewer whose
``viewer.layers[name]`` and ``add_labels`` return proxies of the layers, while iterating
``viewer.layers`` gives the layers themselves.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from collections.abc import Hashable, Iterable
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
    "find_layer",
    "is_lazy_layer",
    "is_user_writable",
    "layer_choices",
    "layer_data",
    "layer_in_viewer",
    "layer_key",
    "layer_stack_shape",
    "require_layer",
    "safe_name",
    "same_layer",
    "slice_axis",
    "snapshot",
    "stack_view",
    "unwrap",
    "user_folder",
]


def layer_choices(viewer: napari.Viewer, kinds: Iterable[type]) -> list[tuple[str, Any]]:
    """``(name, layer)`` pairs of the viewer's layers of the given types, in
    the order of `kinds` (e.g. Labels before Image for a mask picker)."""
    choices: list[tuple[str, Any]] = []
    for kind in kinds:
        choices.extend((layer.name, layer) for layer in viewer.layers if isinstance(layer, kind))
    return choices


def unwrap(obj: Any) -> Any:
    """The napari object behind a plugin proxy (``PublicOnlyProxy``), else `obj` itself."""
    return getattr(obj, "__wrapped__", obj) if obj is not None else None


def layer_key(layer: Layer) -> Hashable:
    """A key that is the same for a layer and every proxy of it (napari's ``unique_id``)."""
    key = getattr(layer, "unique_id", None)
    return key if key is not None else id(unwrap(layer))


def same_layer(a: Layer | None, b: Layer | None) -> bool:
    """True if `a` and `b` are the same layer (either may be a proxy, or None)."""
    if a is None or b is None:
        return False
    return unwrap(a) is unwrap(b) or layer_key(a) == layer_key(b)


def find_layer(viewer: napari.Viewer, layer: Layer | None) -> Layer | None:
    """The viewer's own layer object for `layer` (or a proxy of it), None if it is gone."""
    if layer is None:
        return None
    key = layer_key(layer)
    for other in viewer.layers:
        if unwrap(other) is unwrap(layer) or layer_key(other) == key:
            return other
    return None


def layer_in_viewer(viewer: napari.Viewer, layer: Layer | None) -> bool:
    """True if `layer` (or the layer behind a proxy) is still one of the viewer's layers."""
    return find_layer(viewer, layer) is not None


def is_lazy_layer(layer: Layer) -> bool:
    """True if the layer's (level-0) data is not in memory (dask, zarr, ...)."""
    return not isinstance(_level0(layer), np.ndarray)


def require_layer(layer: Layer | None, what: str) -> Layer:
    """`layer`, or a UserInputError that says which picker is empty."""
    if layer is None:
        raise UserInputError(f"choose {what} first (no layer is selected)")
    return layer


def layer_data(layer: Layer) -> Any:
    """The layer's data (level 0 of a multiscale layer), neither copied nor loaded."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


_level0 = layer_data


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


def slice_axis(shape: tuple[int, ...]) -> int | None:
    """The axis the tracker counts slices along: Z of a ``(..., Z, Y, X)`` layer, None for 2D."""
    return len(shape) - 3 if len(shape) >= 3 else None


def stack_view(data: Any) -> Any:
    """`data` as a ``(Z, Y, X)`` stack without copying: 2D gets a slice axis, singleton
    leading axes of a 4D+ layer are indexed away."""
    shape = tuple(data.shape)
    if len(shape) == 2:
        return data[None] if isinstance(data, np.ndarray) else _Lifted(data)
    if len(shape) > 3 and not isinstance(data, np.ndarray) and not hasattr(data, "compute"):
        import dask.array as da  # zarr would read the whole volume on data[0]

        data = da.from_array(data, chunks=getattr(data, "chunks", "auto"))
    while len(shape) > 3 and shape[0] == 1:
        data, shape = data[0], shape[1:]
    return data


class _Lifted:
    """A 2D lazy array seen as one slice (``view[0]`` is the array)."""

    def __init__(self, data: Any) -> None:
        self.data, self.shape, self.dtype = data, (1, *data.shape), data.dtype

    def __getitem__(self, index: Any) -> Any:
        return self.data if index == 0 else self.data[index]


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


def _package_roots() -> list[Path]:
    roots = [Path(__file__).resolve().parents[1]]  # the installed napari_unet package
    for key in ("purelib", "platlib"):
        try:
            roots.append(Path(sysconfig.get_paths()[key]).resolve())
        except (KeyError, OSError):
            pass
    roots.append(Path(sys.prefix).resolve())
    return roots


def is_user_writable(folder: str | Path) -> bool:
    """True if `folder` can hold the user's files: not inside the installed package or the
    Python installation, and its nearest existing parent is writable."""
    try:
        path = Path(folder).expanduser().resolve()
    except OSError:
        return False
    for root in _package_roots():
        if path == root or root in path.parents:
            return False
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def user_folder(name: str = "napari-unet-models") -> Path:
    """``~/<name>``, or ``./<name>`` if the home folder cannot be written."""
    home = Path.home()
    if is_user_writable(home):
        return home / name
    return Path.cwd() / name
