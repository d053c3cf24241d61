"""ONNX export of a napari-unet network (Keras 3 on TensorFlow, through tf2onnx).

Keras 3 exports ONNX itself (``model.export(path, format="onnx")``); on the
TensorFlow backend it traces the model and converts the graph with the
``tf2onnx`` package (which needs ``onnx``). The exported graph takes one
float32 ``image`` input of shape ``(batch, y, x, 1)`` with free batch and
spatial sizes (multiples of ``2**depth``) and returns the float32
``probability`` of the same shape. Run it with ONNX Runtime
(:func:`run_onnx`).

The packages are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import UserInputError
from .portable import INPUT_NAME, float32_model

__all__ = ["DEFAULT_OPSET", "OUTPUT_NAME", "onnx_opset", "run_onnx", "write_onnx"]

#: Output name of the exported graph.
OUTPUT_NAME = "probability"

#: ONNX opset written by default (ONNX Runtime 1.14 and later run it).
DEFAULT_OPSET = 17


def write_onnx(
    keras_model: Any,
    target: str | Path,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write `keras_model` as one ``.onnx`` file, atomically.

    Parameters
    ----------
    keras_model
        A napari-unet Keras model; a mixed-precision one is converted to
        float32 first (:func:`~.portable.float32_model`).
    target
        The ``.onnx`` file.
    overwrite
        Replace an existing `target`.
    opset
        ONNX opset version.

    Returns
    -------
    Path
        `target`.

    Raises
    ------
    UserInputError
        If `target` exists and `overwrite` is False, it cannot be written, or
        the ONNX packages are missing.
    """
    target = Path(target)
    _require("tf2onnx", "onnx")
    import onnx
    import tensorflow as tf

    model = float32_model(keras_model)
    signature = [tf.TensorSpec([None, None, None, 1], tf.float32, name=INPUT_NAME)]
    with atomic_path(target, overwrite=overwrite) as tmp:
        model.export(
            str(tmp), format="onnx", verbose=False, input_signature=signature, opset_version=opset
        )
        graph = onnx.load(str(tmp))
        _rename_output(graph, OUTPUT_NAME)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    return target


def _rename_output(graph: Any, name: str) -> None:
    """Rename the single graph output (tf2onnx calls it e.g. ``Identity:0``)."""
    output = graph.graph.output[0]
    old = output.name
    for node in graph.graph.node:
        for i, value in enumerate(node.output):
            if value == old:
                node.output[i] = name
    output.name = name


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset version of an ONNX file."""
    _require("onnx")
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    versions = [entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise UserInputError(f"{path} declares no ONNX opset")
    return int(versions[0])


def run_onnx(path: str | Path, batch: np.ndarray) -> np.ndarray:
    """Run an exported network with ONNX Runtime on the CPU.

    Parameters
    ----------
    path
        ``.onnx`` file written by :func:`write_onnx`.
    batch
        float32 ``(B, Y, X, 1)``, Y and X multiples of ``2**depth``.

    Returns
    -------
    numpy.ndarray
        float32 probabilities of the same shape.
    """
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (out,) = session.run(None, {name: np.asarray(batch, dtype=np.float32)})
    return np.asarray(out, dtype=np.float32)


def _require(*modules: str) -> None:
    """A one-line UserInputError naming the missing export packages."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserInputError(
            f"ONNX export needs the package(s) {', '.join(missing)}; "
            "install them with: pip install 'napari-unet[export]'"
        )
