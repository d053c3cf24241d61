"""Portable forms of a trained Keras model: a float32 copy and TensorFlow SavedModels.

A model trained under a mixed-precision policy (``mixed_bfloat16`` on many
CPUs, ``mixed_float16`` on GPUs) computes in half precision although its
variables are float32. Exported weights are meant to give the same numbers in
every runtime (TensorFlow, ONNX Runtime, Keras), so every export starts from
:func:`float32_model`: the same graph and weights with a float32 policy on
every layer.

TensorFlow/Keras is imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_dir

__all__ = [
    "INPUT_NAME",
    "float32_model",
    "keras_predict",
    "make_shareable",
    "uses_mixed_precision",
    "write_saved_model",
]

#: Name of the image input of a napari-unet network (see :func:`~.unet.build_unet`).
INPUT_NAME = "image"


def uses_mixed_precision(keras_model: Any) -> bool:
    """True if any layer of `keras_model` computes in float16 or bfloat16."""
    return any(
        getattr(layer.dtype_policy, "compute_dtype", "float32") != "float32"
        for layer in keras_model.layers
    )


def float32_model(keras_model: Any) -> Any:
    """A float32 copy of a functional Keras model (the model itself if already float32).

    Every layer is rebuilt from its config with ``dtype="float32"`` and the
    weights are copied, so a network trained under a mixed-precision policy
    gives full-precision outputs in every export format.

    Parameters
    ----------
    keras_model
        A functional Keras 3 model.

    Returns
    -------
    keras.Model
        Same architecture, layer names and weights; float32 compute.
    """
    if not uses_mixed_precision(keras_model):
        return keras_model
    import keras

    def clone_layer(layer: Any) -> Any:
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(keras_model, clone_function=clone_layer)
    clone.set_weights(keras_model.get_weights())
    return clone


def keras_predict(keras_model: Any, batch: np.ndarray) -> np.ndarray:
    """Run `keras_model` once on a float32 ``(B, Y, X, 1)`` batch (inference mode)."""
    out = keras_model(np.asarray(batch, dtype=np.float32), training=False)
    return np.asarray(out, dtype=np.float32)


def write_saved_model(
    keras_model: Any,
    target: str | Path,
    overwrite: bool = False,
    output_name: str | None = None,
) -> Path:
    """Write a TensorFlow SavedModel folder of `keras_model` atomically.

    Parameters
    ----------
    keras_model
        The (float32) Keras model.
    target
        Folder to create.
    overwrite
        Replace an existing `target` (only once the new folder is complete).
    output_name
        None: Keras 3's own export (``model.export(format="tf_saved_model")``),
        whose ``serve`` endpoint returns the probability tensor. A name: the
        ``serve`` endpoint returns ``{output_name: probability}`` instead, as
        bioimage.io's TensorFlow runner expects.

    Returns
    -------
    Path
        `target`.

    Raises
    ------
    UserInputError
        If `target` exists and `overwrite` is False, or it cannot be written.
    """
    target = Path(target)
    with atomic_dir(target, overwrite=overwrite) as tmp:
        if output_name is None:
            keras_model.export(str(tmp), format="tf_saved_model", verbose=False)
        else:
            _write_dict_endpoint(keras_model, tmp, output_name)
        make_shareable(tmp)
    return target


def make_shareable(folder: Path) -> None:
    """Give a folder made by :func:`~napari_unet.engine.atomic.atomic_dir` (mode 0700,
    like every temporary folder) the permissions of a folder made by ``mkdir``."""
    for path in (folder, *(p for p in folder.rglob("*") if p.is_dir())):
        os.chmod(path, 0o755 & ~_umask())


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_dict_endpoint(keras_model: Any, folder: Path, output_name: str) -> None:
    """A SavedModel whose ``serve`` endpoint maps the image to ``{output_name: probability}``."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(
        "serve",
        lambda image: {output_name: keras_model(image, training=False)},
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(folder), verbose=False)
