"""Typed configuration shared by the CLI, the napari widgets and the model folder.

One :class:`Config` describes a whole run: where the data is, how it is
normalized and augmented, the network, the training recipe and prediction.
It round-trips through YAML (``yaml.safe_load`` only) and is saved beside the
weights so that a model folder explains itself.

The sections (:class:`DataConfig`, :class:`AugmentConfig`, ...) and
:data:`MODEL_PRESETS` live in :mod:`.config_sections` and are re-exported here;
this module holds the root :class:`Config` and YAML loading/saving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from .config_sections import (
    MODEL_PRESETS,
    AffineConfig,
    AugmentConfig,
    BorderWeightConfig,
    DataConfig,
    DeviceConfig,
    DistributeConfig,
    ElasticConfig,
    ForegroundConfig,
    FramesConfig,
    IntensityConfig,
    ModelConfig,
    PredictConfig,
    ScheduleConfig,
    TrainConfig,
    _Section,
)
from .config_tasks import (
    TASK_LOSSES,
    SplitConfig,
    check_task_settings,
    with_task_default_loss,
)
from .errors import UserInputError

__all__ = [
    "MODEL_PRESETS",
    "AffineConfig",
    "AugmentConfig",
    "BorderWeightConfig",
    "Config",
    "DataConfig",
    "DeviceConfig",
    "DistributeConfig",
    "ElasticConfig",
    "ForegroundConfig",
    "FramesConfig",
    "IntensityConfig",
    "ModelConfig",
    "PredictConfig",
    "ScheduleConfig",
    "SplitConfig",
    "TrainConfig",
    "load_config",
    "save_config",
]


class Config(_Section):
    """A whole run: data, augmentation, model, training, prediction."""

    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    output: str | None = Field(None, description="Model folder written by training.")

    @model_validator(mode="before")
    @classmethod
    def _task_default_loss(cls, data: Any) -> Any:
        """Without ``train.loss``, a multiclass or regression task trains with its own
        default loss (``ce_dice``, ``l1``); binary keeps ``bce_dice``."""
        return with_task_default_loss(data)

    @model_validator(mode="after")
    def _settings_fit_task(self) -> Config:
        """Refuse a loss, mask kind, border weights or monitor that the task cannot use."""
        check_task_settings(self)
        return self

    @model_validator(mode="after")
    def _patch_fits_network(self) -> Config:
        """Reject a training patch side that the U-Net cannot down-sample evenly."""
        multiple = self.model.multiple
        if self.train.patch_size % multiple:
            raise ValueError(
                f"train.patch_size ({self.train.patch_size}) must be a multiple of "
                f"2**model.depth = {multiple}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain-Python dict suitable for YAML.

        Returns
        -------
        dict
            Nested dicts of JSON types (tuples become lists).
        """
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A validated copy with dotted-key overrides.

        Parameters
        ----------
        overrides
            ``{"section.key": value}``, e.g. ``{"train.epochs": 3}``; None values
            are skipped.

        Returns
        -------
        Config
            The new config.
        """
        data = self.to_dict()
        task = overrides.get("model.task")
        if task in TASK_LOSSES and "train.loss" not in overrides:
            if data["train"]["loss"] not in TASK_LOSSES[task]:
                del data["train"]["loss"]  # the new task's default loss applies
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return Config.model_validate(data)


#: Environment variable naming the data folder: a config path written as
#: ``${NAPARI_UNET_DATA}/isbi2012/train-volume.tif`` is read from that folder.
DATA_ROOT_VAR = "NAPARI_UNET_DATA"
_DATA_ROOT_TOKEN = "${" + DATA_ROOT_VAR + "}"
#: Without ``NAPARI_UNET_DATA``, these data paths under it fall back to the shipped sample.
_SAMPLE_ROLES = {
    "images": "train_images",
    "masks": "train_masks",
    "val_images": "test_images",
    "val_masks": "test_masks",
}


def _expand_data_root(value: str, key: str) -> str:
    """Replace ``${NAPARI_UNET_DATA}`` in a config path.

    With the variable unset, ``data.images``/``masks`` become the shipped sample's
    training slices and ``data.val_images``/``val_masks`` its held-out slices
    (``napari_unet/sample_data/``), so a recipe written for the full data runs
    from a fresh clone. A relative ``NAPARI_UNET_DATA`` is relative to the working
    folder.

    Parameters
    ----------
    value
        The path as written in the config.
    key
        Its field (``images``, ``masks``, ``val_images``, ``val_masks``, ...).

    Returns
    -------
    str
        The expanded path (unchanged without the token).

    Raises
    ------
    UserInputError
        If the variable is unset and the field has no sample to fall back to.
    """
    if _DATA_ROOT_TOKEN not in value:
        return value
    import os

    root = os.environ.get(DATA_ROOT_VAR)
    if root:
        return value.replace(_DATA_ROOT_TOKEN, str(Path(root).expanduser().resolve()))
    if key in _SAMPLE_ROLES:
        from ..sample import sample_paths

        return str(sample_paths()[_SAMPLE_ROLES[key]])
    raise UserInputError(
        f"{value} needs the environment variable {DATA_ROOT_VAR} (the data folder)"
    )


def _resolve_paths(config: Config, base: Path) -> Config:
    """Make relative data and model paths relative to the config file's folder.

    ``${NAPARI_UNET_DATA}`` is expanded first (see :func:`_expand_data_root`).

    Parameters
    ----------
    config
        Config as read from the file.
    base
        Folder of the config file (absolute).

    Returns
    -------
    Config
        A copy with the data paths, ``frames.folder``, ``train.init_from`` and
        ``output`` made absolute.
    """
    data = config.to_dict()
    for key in ("images", "masks", "val_images", "val_masks", "dataset", "patch_cache"):
        value = data["data"].get(key)
        if value:
            value = data["data"][key] = _expand_data_root(value, key)
        if value and not Path(value).expanduser().is_absolute():
            data["data"][key] = str((base / value).resolve())
    frames = data["data"].get("frames") or {}
    if frames.get("folder"):
        frames["folder"] = _expand_data_root(frames["folder"], "frames.folder")
    if frames.get("folder") and not Path(frames["folder"]).expanduser().is_absolute():
        frames["folder"] = str((base / frames["folder"]).resolve())
    for section, key in (("train", "init_from"), ("train", "log_dir"), (None, "output")):
        node = data[section] if section else data
        value = node.get(key)
        if value and not Path(value).expanduser().is_absolute():
            node[key] = str((base / value).resolve())
    return Config.model_validate(data)


def load_config(path: str | Path, resolve_paths: bool = True) -> Config:
    """Read a YAML config safely and validate it.

    Parameters
    ----------
    path
        YAML file.
    resolve_paths
        Resolve relative data/model paths against the file's folder.

    Returns
    -------
    Config
        The validated config.

    Raises
    ------
    UserInputError
        If the file is missing, is not YAML, or does not validate.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserInputError(f"config {path} is not a text (UTF-8) YAML file") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserInputError(f"config {path} is not valid YAML: {_yaml_reason(exc)}") from None
    if not isinstance(raw, dict):
        raise UserInputError(
            f"config {path} must be a mapping of sections, got {type(raw).__name__}"
        )
    try:
        config = Config.model_validate(raw)
    except ValueError as exc:
        raise UserInputError(
            f"config {path} is invalid: {_short_validation_message(exc)}"
        ) from None
    return _resolve_paths(config, path.parent.resolve()) if resolve_paths else config


def _yaml_reason(exc: Exception) -> str:
    """One line from a (multi-line) PyYAML error: the problem and where.

    Parameters
    ----------
    exc
        The PyYAML error.

    Returns
    -------
    str
        The problem with its line and column; Python object tags get a plain message.
    """
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and "tag:yaml.org,2002:python" in problem:
        problem = "Python object tags (!!python/...) are not allowed in a config"
    if problem:
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{problem}{where}"
    return " ".join(str(exc).split())


def _short_validation_message(exc: Exception) -> str:
    """One line from a pydantic validation error: ``loc: message`` joined by ``;``.

    Parameters
    ----------
    exc
        A pydantic ``ValidationError`` (or any exception: then ``str(exc)``).

    Returns
    -------
    str
        The short message.
    """
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return "; ".join(parts)
    return str(exc)


def save_config(config: Config, path: str | Path) -> None:
    """Write the config as YAML atomically (temporary name, then rename).

    Parameters
    ----------
    config
        Config to write.
    path
        Destination YAML file.
    """
    from .atomic import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))
