"""Import a bioimage.io model package as a napari-unet model folder.

A package exported by napari-unet carries its training config in
``config.napari_unet``; any other spec-0.5 package is accepted when its
``keras_v3`` weights are a napari-unet U-Net (same layer types and weight shapes
as :func:`~.unet.build_unet` for some depth and width) taking one grey
channel as ``(batch, y, x, channel)``, and its preprocessing is percentile
scaling or none, so that the folder predicts and fine-tunes like a trained
one. Anything else is refused with one :class:`UserInputError` line.

The bioimage.io packages and Keras are imported inside the functions.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import atomic_dir, check_writable
from ..config import Config
from ..errors import UserInputError
from .model_folder import ModelFolder, load_model
from .portable import make_shareable

__all__ = ["import_bioimageio"]

#: Preprocessing steps that change nothing napari-unet would do differently.
_NEUTRAL_STEPS = {"ensure_dtype", "clip"}


def import_bioimageio(package: str | Path, dest_dir: str | Path, overwrite: bool = False) -> Path:
    """Turn a bioimage.io package with ``keras_v3`` weights into a model folder.

    Parameters
    ----------
    package
        A local package ``.zip`` (or its ``rdf.yaml``).
    dest_dir
        Model folder to create: ``config.yaml``, ``best.keras`` and
        ``metadata.json`` (which names the package under ``imported_from``).
    overwrite
        Replace an existing `dest_dir` (only once the new folder is complete).

    Returns
    -------
    Path
        `dest_dir`, loadable with :func:`~.model_folder.load_model` and usable
        as ``train.init_from`` for fine-tuning.

    Raises
    ------
    UserInputError
        If the package is missing or invalid, has no ``keras_v3`` weights,
        describes another network or preprocessing, or `dest_dir` exists
        without `overwrite`.
    """
    package = Path(package).expanduser()
    dest_dir = Path(dest_dir)
    if not package.exists():
        raise UserInputError(f"bioimage.io package {package} does not exist")
    check_writable(dest_dir, overwrite)
    descr = _load(package)
    entry = descr.weights.keras_v3
    if entry is None:
        present = ", ".join(name for name, value in descr.weights if value is not None)
        raise UserInputError(
            f"{package} has no keras_v3 weights (it has {present or 'none'}); "
            "napari-unet imports only Keras 3 weights"
        )
    ours = _our_section(descr)
    with atomic_dir(dest_dir, overwrite=overwrite) as tmp:
        folder = ModelFolder(tmp)
        with open(folder.best_path, "wb") as handle:
            shutil.copyfileobj(entry.get_reader(), handle)
        if ours is not None:
            config = _validated(ours.get("config"), package)
            original = dict(ours.get("metadata") or {})
        else:
            config = _config_from_description(descr, folder.best_path, package)
            original = {}
        folder.save_config(config)
        metadata = {
            **original,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "parent": None,
            "precision": "float32",
            "imported_from": {
                "package": str(package.resolve()),
                "name": descr.name,
                "id": None if descr.id is None else str(descr.id),
                "version": None if descr.version is None else str(descr.version),
                "format_version": descr.format_version,
                "weights": "keras_v3",
                "sha256": None if entry.sha256 is None else str(entry.sha256),
                "napari_unet_export": ours is not None,
            },
        }
        folder.save_json(folder.metadata_path, metadata)
        _check_finetunable(load_model(tmp), package)
        make_shareable(tmp)
    return dest_dir


def _load(package: Path) -> Any:
    """The package's validated ModelDescr, or a one-line UserInputError."""
    try:
        from bioimageio.spec import InvalidDescr, load_description
    except ImportError:
        raise UserInputError(
            "importing bioimage.io packages needs bioimageio.spec; "
            "install it with: pip install 'napari-unet[export]'"
        ) from None
    try:
        descr = load_description(package.resolve(), perform_io_checks=True)
    except Exception as exc:  # not a zip, unreadable YAML...
        raise UserInputError(f"cannot read bioimage.io package {package}: {exc}") from None
    if isinstance(descr, InvalidDescr):
        errors = [
            f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" if e.loc else e.msg
            for d in descr.validation_summary.details
            for e in d.errors
        ]
        first = errors[0].splitlines()[0] if errors else "it does not validate"
        raise UserInputError(f"{package} is not a valid bioimage.io package: {first}")
    if descr.type != "model" or not hasattr(descr.weights, "keras_v3"):
        raise UserInputError(
            f"{package} is not a bioimage.io model of spec 0.5 "
            f"(type {descr.type}, format {descr.format_version}); napari-unet imports only those"
        )
    return descr


def _our_section(descr: Any) -> dict[str, Any] | None:
    """``config.napari_unet`` of a package napari-unet exported, else None."""
    section = (descr.config.model_extra or {}).get("napari_unet")
    if isinstance(section, dict) and isinstance(section.get("config"), dict):
        return section
    return None


def _validated(raw: Any, package: Path) -> Config:
    try:
        return Config.model_validate(raw)
    except ValueError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise UserInputError(f"{package}: its napari-unet config is invalid: {reason}") from None


def _config_from_description(descr: Any, keras_file: Path, package: Path) -> Config:
    """A training config for a foreign package: architecture from the network,
    normalization from the preprocessing."""
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise UserInputError(
            f"{package} has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; "
            "napari-unet models have one of each"
        )
    tensor = descr.inputs[0]
    axes = [str(axis.id) for axis in tensor.axes]
    channels = [getattr(axis, "size", None) for axis in tensor.axes if axis.type == "channel"]
    if axes != ["batch", "y", "x", "channel"] or channels != [1]:
        raise UserInputError(
            f"{package} takes input axes {axes}; napari-unet needs (batch, y, x, channel) "
            "with one grey channel"
        )
    data: dict[str, Any] = {"normalization": "none"}
    for step in tensor.preprocessing:
        if step.id == "scale_range":
            kwargs = step.kwargs
            joint = {str(a) for a in (kwargs.axes or [])}
            data = {
                "normalization": "stack" if not kwargs.axes or "batch" in joint else "slice",
                "percentiles": [kwargs.min_percentile, kwargs.max_percentile],
            }
        elif step.id not in _NEUTRAL_STEPS:
            raise UserInputError(
                f"{package}: its preprocessing step '{step.id}' has no napari-unet equivalent"
            )
    model = _architecture(keras_file, package)
    return _validated({"model": model, "data": data}, package)


def _architecture(keras_file: Path, package: Path) -> dict[str, Any]:
    """Depth, width, batch norm and dropout read off a Keras U-Net."""
    import keras

    try:
        network = keras.saving.load_model(keras_file, compile=False, safe_mode=True)
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserInputError(f"{package}: cannot load its keras_v3 weights: {text}") from None
    layers = network.layers
    convs = [layer for layer in layers if type(layer).__name__ == "Conv2D"]
    dropouts = [layer for layer in layers if type(layer).__name__ == "Dropout"]
    if not convs:
        raise UserInputError(f"{package}: its network has no convolutions; not a U-Net")
    return {
        "depth": sum(type(layer).__name__ == "MaxPooling2D" for layer in layers),
        "base_filters": int(convs[0].filters),
        "batch_norm": any(type(layer).__name__ == "BatchNormalization" for layer in layers),
        "dropout": float(dropouts[0].rate) if dropouts else 0.0,
    }


def _check_finetunable(loaded: Any, package: Path) -> None:
    """Refuse a network whose weights would not fit :func:`build_unet` of its config."""
    import keras

    from .unet import build_unet

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        reference = build_unet(loaded.config.model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    ours = [type(layer).__name__ for layer in reference.layers]
    theirs = [type(layer).__name__ for layer in loaded.keras_model.layers]
    shapes = [tuple(w.shape) for w in reference.weights]
    their_shapes = [tuple(w.shape) for w in loaded.keras_model.weights]
    if ours != theirs or shapes != their_shapes:
        raise UserInputError(
            f"{package}: its keras_v3 network is not a napari-unet U-Net of the described "
            "architecture, so napari-unet cannot fine-tune it"
        )
