"""HDF5 weights: export a model's weights, warm-start a training from a weights file.

* ``.weights.h5``: Keras 3 weights (``model.save_weights``), the layer variables only;
* ``.h5`` / ``.hdf5``: the legacy Keras HDF5 model file (``model.save``; what zhixuhao's
  ``unet_membrane.hdf5`` checkpoint is), whose weights Keras also loads by layer.

``train.init_from`` (``--init-from``) may name such a file instead of a model folder:
the network is then the config's ``model`` section, and the file must hold weights of
exactly that network (:func:`load_weights_file` says so in one line otherwise).
TensorFlow/Keras is imported inside the functions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..atomic import check_writable, commit
from ..errors import UserInputError

__all__ = [
    "WEIGHTS_SUFFIXES",
    "is_weights_file",
    "load_weights_file",
    "same_architecture",
    "save_weights_h5",
]

#: File names recognised as HDF5 weights.
WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5")


def is_weights_file(path: str | Path | None) -> bool:
    """True if `path` names an HDF5 weights file (by its name; it need not exist)."""
    if not path:
        return False
    name = Path(path).name.lower()
    return name.endswith(WEIGHTS_SUFFIXES) and not Path(path).is_dir()


def _architecture(model_config: Any) -> dict[str, Any]:
    data = model_config.model_dump(exclude={"preset"})
    data["in_channels"] = data.get("in_channels") or 1
    return data


def same_architecture(a: Any, b: Any) -> bool:
    """Whether two ``ModelConfig`` describe the same network (preset aside; an unset
    ``in_channels`` counts as 1, as in model folders written before channels existed)."""
    return _architecture(a) == _architecture(b)


def load_weights_file(keras_model: Any, path: str | Path) -> None:
    """Load an HDF5 weights file into `keras_model`.

    Raises
    ------
    UserInputError
        If the file is missing, unreadable or holds another network's weights.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"--init-from {path}: no such weights file")
    try:
        keras_model.load_weights(str(path))
    except Exception as exc:  # shape/layer mismatches come as ValueError, KeyError, ...
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserInputError(
            f"--init-from {path} does not hold weights of the config's network (the model "
            f"section: depth, base_filters, batch_norm, task, classes, in_channels): {reason}"
        ) from None


def save_weights_h5(
    model_dir: str | Path, output: str | Path, overwrite: bool = False, safe_mode: bool = True
) -> Path:
    """Write the best weights of a model folder as ``.weights.h5`` or legacy ``.h5``.

    Parameters
    ----------
    model_dir
        Model folder written by training.
    output
        ``NAME.weights.h5`` (Keras 3 weights) or ``NAME.h5`` / ``NAME.hdf5`` (legacy HDF5
        model file). Written under a temporary name, then renamed.
    overwrite
        Replace an existing `output`.
    safe_mode
        Load the checkpoint in Keras safe mode.

    Returns
    -------
    Path
        `output`.
    """
    from .model_folder import load_model
    from .portable import float32_model

    output = Path(output).expanduser()
    if not is_weights_file(output):
        raise UserInputError(f"an HDF5 weights export ends in .weights.h5 or .h5, got {output}")
    check_writable(output, overwrite)
    model = float32_model(load_model(model_dir, safe_mode=safe_mode).keras_model)
    weights_only = output.name.lower().endswith(".weights.h5")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as tmp:
        staged = Path(tmp) / ("model.weights.h5" if weights_only else "model.h5")
        try:
            if weights_only:
                model.save_weights(str(staged))
            else:
                model.save(str(staged))
        except OSError as exc:
            raise UserInputError(f"cannot write {output}: {exc.strerror or exc}") from None
        commit(staged, output, overwrite)  # synced; never over an output that appeared
    return output
