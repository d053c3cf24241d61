"""The model folder: everything needed to reuse, explain and resume a model.

::

    model_dir/
      config.yaml     the full Config used for training (yaml.safe_load to read)
      best.keras      weights with the best validation score
      last.keras      weights after the last finished epoch
      history.json    one record per epoch (losses, metrics, learning rate, time)
      metadata.json   version, parent model, data seen, normalization, final metrics
      logs/           TensorBoard event files

Every file is written atomically. Loading uses Keras ``safe_mode`` (no
Lambda layers or arbitrary code), ``yaml.safe_load`` and plain JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, atomic_write_text
from ..config import Config, load_config, save_config
from ..errors import UserInputError

__all__ = ["LoadedModel", "ModelFolder", "check_model_folder", "load_model"]


@dataclass
class ModelFolder:
    """Paths and small-file I/O of one model folder."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def best_path(self) -> Path:
        return self.path / "best.keras"

    @property
    def last_path(self) -> Path:
        return self.path / "last.keras"

    @property
    def history_path(self) -> Path:
        return self.path / "history.json"

    @property
    def metadata_path(self) -> Path:
        return self.path / "metadata.json"

    @property
    def logs_path(self) -> Path:
        return self.path / "logs"

    def create(self) -> None:
        """Create the folder (and parents); a clear error if that is impossible."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserInputError(
                f"cannot create model folder {self.path}: {exc.strerror or exc}"
            ) from None
        self.remove_stale_temporaries()

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files that a killed process left behind.

        Atomic writes go to ``.<name>.<random>.tmp<suffix>`` and are renamed
        into place; a process killed mid-write leaves that partial file, which
        is never read as a checkpoint. Returns the removed paths.
        """
        removed = []
        try:
            candidates = [p for p in self.path.iterdir() if p.is_file()]
        except OSError:
            return removed
        for candidate in candidates:
            name = candidate.name
            if name.startswith(".") and ".tmp" in name:
                try:
                    candidate.unlink()
                    removed.append(candidate)
                except OSError:
                    pass
        return removed

    def save_config(self, config: Config) -> None:
        save_config(config, self.config_path)

    def load_config(self) -> Config:
        return load_config(self.config_path, resolve_paths=False)

    def save_weights_file(self, model: Any, which: str) -> Path:
        """Save the Keras model as ``best.keras`` or ``last.keras`` atomically."""
        target = self.best_path if which == "best" else self.last_path
        with atomic_path(target) as tmp:
            model.save(tmp)
        return target

    def save_json(self, path: Path, data: Any) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, default=_json_default))

    def read_json(self, path: Path, default: Any = None) -> Any:
        if not path.exists():
            return default
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserInputError(f"cannot read {path}: {exc}") from None

    def weights_file(self, prefer: str = "best") -> Path:
        """The weights to load: `prefer` if present, else the other one."""
        order = [self.best_path, self.last_path]
        if prefer == "last":
            order.reverse()
        for candidate in order:
            if candidate.exists():
                return candidate
        raise UserInputError(f"{self.path} is not a model folder: no best.keras or last.keras")


def _json_default(value: Any) -> Any:
    try:
        return value.item()  # numpy scalars
    except AttributeError:
        return str(value)


@dataclass
class LoadedModel:
    """A Keras model with the config and normalization it was trained with."""

    keras_model: Any
    config: Config
    folder: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def multiple(self) -> int:
        return self.config.model.multiple


def check_model_folder(folder: str | Path) -> Path:
    """The model folder of `folder` (a folder, or a ``.keras`` file inside one), checked to
    exist and hold a config, before any slow work starts.

    Raises
    ------
    UserInputError
        If the folder is missing or has no ``config.yaml``.
    """
    path = Path(folder)
    if path.suffix == ".keras":
        path = path.parent
    if not path.is_dir():
        raise UserInputError(f"model folder {path} does not exist")
    if not ModelFolder(path).config_path.exists():
        raise UserInputError(f"{path} is not a model folder: config.yaml is missing")
    return path


def load_model(folder: str | Path, prefer: str = "best", safe_mode: bool = True) -> LoadedModel:
    """Load a model folder written by training.

    Parameters
    ----------
    folder
        Model folder (or a ``.keras`` file inside one).
    prefer
        ``best`` or ``last`` checkpoint.
    safe_mode
        Keras safe mode: refuse Lambda layers and other arbitrary code. Only
        turn it off for a model you trust.

    Raises
    ------
    UserInputError
        If the folder is missing, incomplete or the file cannot be loaded.
    """
    path = check_model_folder(folder)
    weights_file = Path(folder) if Path(folder).suffix == ".keras" else None
    model_folder = ModelFolder(path)
    config = model_folder.load_config()
    weights_file = weights_file or model_folder.weights_file(prefer)

    import keras  # lazily: TensorFlow is heavy

    try:
        keras_model = keras.saving.load_model(weights_file, compile=False, safe_mode=safe_mode)
    except (ValueError, TypeError) as exc:  # Keras wraps nested refusals in TypeError
        if "safe_mode" in str(exc):
            raise UserInputError(
                f"{weights_file} contains custom code (e.g. a Lambda layer) and was refused "
                "by Keras safe mode; load it only if you trust its author "
                "(safe_mode=False; on the command line --unsafe-load)"
            ) from None
        raise UserInputError(f"cannot load model {weights_file}: {_first_line(exc)}") from None
    except Exception as exc:  # zip/h5 errors of a broken file
        raise UserInputError(f"cannot load model {weights_file}: {_first_line(exc)}") from None
    _check_grey_input(keras_model, weights_file, config.model.in_channels or 1)
    metadata = model_folder.read_json(model_folder.metadata_path, default={}) or {}
    return LoadedModel(keras_model=keras_model, config=config, folder=path, metadata=metadata)


def _first_line(exc: BaseException) -> str:
    """The gist of an error message, shortened: Keras deserialization errors nest
    ("... Exception encountered: ...") and span many lines; the innermost says why."""
    text = str(exc).strip().rsplit("Exception encountered:", 1)[-1]
    lines = text.strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _check_grey_input(keras_model: Any, weights_file: Path, channels: int = 1) -> None:
    """Refuse a Keras model that does not take one image of `channels` channels
    (batch, y, x, channels): ``model.in_channels`` of its config, 1 for grey EM."""
    try:
        shapes = [tuple(tensor.shape) for tensor in keras_model.inputs]
    except (AttributeError, TypeError, ValueError):  # not a functional model
        return
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][-1] != channels:
        shown = shapes[0] if len(shapes) == 1 else shapes
        expected = "one grey image" if channels == 1 else f"one {channels}-channel image"
        raise UserInputError(
            f"{weights_file} is not a napari-unet model: its input has shape {shown}; "
            f"expected {expected} (batch, height, width, {channels})"
        )
