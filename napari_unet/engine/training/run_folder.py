"""The model folder a training writes to, and the config that goes into it.

:func:`_with_parent_architecture` makes a warm start use its parent's network;
:func:`open_run_folder` picks and creates the folder (one per worker in
multi-worker training), keeps small in-memory training data in it for later
fine-tuning and writes ``config.yaml``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import UserInputError
from ..model.model_folder import ModelFolder
from ..model.strategy import worker_output

__all__ = ["KEEP_DATA_BYTES", "RUN_FILES", "check_run_folder", "open_run_folder"]

#: In-memory training data up to this size is stored in the model folder (for replay when
#: fine-tuning on corrections later); larger data is not copied.
KEEP_DATA_BYTES = 256 * 2**20
#: What a training writes into its model folder (and ``overwrite`` removes first).
RUN_FILES = (
    "best.keras",
    "last.keras",
    "config.yaml",
    "history.json",
    "metadata.json",
    "train-error.log",
    "logs",
)
#: Any of these makes a folder one that holds a model.
_MODEL_FILES = ("best.keras", "last.keras", "config.yaml")


def check_run_folder(config: Config, overwrite: bool = False) -> None:
    """Refuse to train into a folder that already holds a model, unless `overwrite`.

    A folder holds a model when it has a checkpoint (``best.keras``, ``last.keras``)
    or a ``config.yaml``. Training into the folder of the model it starts from
    (``train.init_from``) is refused even with `overwrite`: the parent would be
    removed before it is loaded (fine-tuning writes a new version instead).

    Raises
    ------
    UserInputError
        With one line saying what to do.
    """
    if not config.output:
        return
    output = Path(config.output).expanduser()
    if config.train.init_from and _same_folder(Path(config.train.init_from), output):
        raise UserInputError(
            f"cannot train into {output}: it holds the model training starts from "
            "(--init-from); choose another --output"
        )
    if overwrite or not output.is_dir():
        return
    held = [
        name for name in ("best.keras", "last.keras", "config.yaml") if (output / name).exists()
    ]
    if held:
        raise UserInputError(
            f"{output} already holds a model ({', '.join(held)}); choose another --output "
            "or pass --overwrite to replace it"
        )


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return False


def _clear_run_files(folder: ModelFolder) -> None:
    """Remove what an earlier training left in `folder` (``overwrite``), so that a new
    run stopped early never mixes its config with the old run's checkpoints."""
    import shutil

    for name in RUN_FILES:
        path = folder.path / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as exc:
            raise UserInputError(
                f"cannot replace the model in {folder.path}: {exc.strerror or exc}"
            ) from None


def open_run_folder(
    config: Config, images: Any, masks: Any, keep_data: bool = True, overwrite: bool = False
) -> tuple[Config, ModelFolder]:
    """Create the model folder of a training and write its ``config.yaml``.

    Parameters
    ----------
    config
        The run's configuration; ``config.output`` names the folder (default
        ``models/unet-<time>``).
    images, masks
        The training data as given to :func:`~napari_unet.engine.training.train.train_iter`;
        in-memory arrays are stored in the folder (see :func:`_keep_array_data`).
    keep_data
        False: do not store them (fine-tuning replays the parent's data instead).
    overwrite
        Replace a model already in the folder (see :func:`check_run_folder`).

    Returns
    -------
    config, folder
        The configuration as saved (``output`` set to the folder) and the folder.
    """
    config = worker_output(config)  # multi-worker training: non-chief workers write aside
    folder = _model_folder(config)
    check_run_folder(config.model_copy(update={"output": str(folder.path)}), overwrite)
    folder.create()
    if overwrite:
        _clear_run_files(folder)
    config = config.model_copy(update={"output": str(folder.path)})
    if keep_data:
        config = _keep_array_data(config, folder, images, masks)
    folder.save_config(config)
    return config, folder


def _model_folder(config: Config) -> ModelFolder:
    """The folder ``config.output``, or a new ``models/unet-<time>`` (not yet created)."""
    if config.output:
        return ModelFolder(Path(config.output))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return ModelFolder(Path("models") / f"unet-{stamp}")


def _keep_array_data(config: Config, folder: ModelFolder, images: Any, masks: Any) -> Config:
    """Store training data given as in-memory arrays (e.g. napari layers) in the model
    folder as ``data/images.tif`` and ``data/masks.tif``, so that fine-tuning on
    corrections can mix the original data back in. Paths are kept relative."""
    if not isinstance(images, np.ndarray) or not isinstance(masks, np.ndarray):
        return config
    if images.nbytes + masks.nbytes > KEEP_DATA_BYTES:
        return config
    from ..io.stacks import write_tiff

    data_dir = folder.path / "data"
    data_dir.mkdir(exist_ok=True)
    write_tiff(data_dir / "images.tif", images, compression="zlib")
    write_tiff(data_dir / "masks.tif", np.asarray(masks), compression="zlib")
    data = config.data.model_copy(update={"images": "data/images.tif", "masks": "data/masks.tif"})
    return config.model_copy(update={"data": data})


def _with_parent_architecture(config: Config) -> Config:
    """When warm-starting, the network must be the parent's: take its model section.

    A ``.weights.h5``/``.h5`` file carries no config: the config's own model section is
    the network, and loading the file checks that it fits (see
    :mod:`~napari_unet.engine.model.weights_io`)."""
    from ..model.weights_io import is_weights_file

    if not config.train.init_from or is_weights_file(config.train.init_from):
        return config
    parent_dir = Path(config.train.init_from)
    if not (parent_dir / "config.yaml").exists():
        raise UserInputError(f"--init-from {parent_dir} is not a model folder (no config.yaml)")
    parent_model = ModelFolder(parent_dir).load_config().model
    try:
        return Config.model_validate({**config.to_dict(), "model": parent_model.model_dump()})
    except ValueError as exc:
        raise UserInputError(f"cannot warm-start from {parent_dir}: {exc}") from None
