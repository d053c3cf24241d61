"""Typed configuration shared by the CLI, the napari widgets and the model folder.

One :class:`Config` describes a whole run: where the data is, how it is
normalized and augmented, the network, the training recipe and prediction.
It round-trips through YAML (``yaml.safe_load`` only) and is saved beside the
weights so that a model folder explains itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import UserInputError

__all__ = [
    "AffineConfig",
    "AugmentConfig",
    "Config",
    "DataConfig",
    "ElasticConfig",
    "IntensityConfig",
    "ModelConfig",
    "PredictConfig",
    "TrainConfig",
    "load_config",
    "save_config",
    "MODEL_PRESETS",
]


class _Section(BaseModel):
    """Base for all config sections: strict keys, validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the training data lives and how it is prepared."""

    images: str | None = Field(None, description="Image stack, single image or folder of slices.")
    masks: str | None = Field(None, description="Mask stack/folder matching `images` slice by slice.")
    val_images: str | None = Field(None, description="Explicit validation images (else a split).")
    val_masks: str | None = Field(None, description="Explicit validation masks.")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of slices held out when no val files are given."
    )
    normalization: Literal["stack", "slice"] = Field(
        "stack", description="Percentile normalization over the whole stack or per slice."
    )
    percentiles: tuple[float, float] = Field(
        (1.0, 99.8), description="Low/high percentiles mapped to 0 and 1."
    )
    resize: tuple[int, int] | None = Field(
        None, description="Resize every slice to (height, width) before training/prediction."
    )

    @field_validator("percentiles")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low < high <= 100.0:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        return value


class AffineConfig(_Section):
    """Random affine transform (applied with probability `probability`)."""

    enabled: bool = True
    probability: float = Field(0.75, ge=0.0, le=1.0)
    rotation_degrees: float = Field(180.0, ge=0.0, le=180.0, description="Max |rotation|.")
    shift: float = Field(0.05, ge=0.0, le=0.5, description="Max shift as a fraction of size.")
    shear_degrees: float = Field(5.0, ge=0.0, le=45.0)
    zoom: tuple[float, float] = Field((0.9, 1.1), description="Min/max isotropic scale.")


class ElasticConfig(_Section):
    """Elastic deformation as in the U-Net paper: random displacements on a coarse
    grid, smoothly interpolated to a dense field."""

    enabled: bool = True
    probability: float = Field(0.5, ge=0.0, le=1.0)
    grid_points: int = Field(3, ge=2, le=32, description="Control points per axis.")
    sigma_pixels: float = Field(10.0, ge=0.0, description="Std of control-point displacements.")


class IntensityConfig(_Section):
    """Photometric augmentation of the image only (the mask is unchanged)."""

    enabled: bool = True
    brightness: float = Field(0.1, ge=0.0, le=1.0, description="Max additive shift.")
    contrast: tuple[float, float] = Field((0.8, 1.2), description="Multiplicative range.")
    gamma: tuple[float, float] = Field((0.8, 1.25), description="Gamma range.")
    noise_std: float = Field(0.03, ge=0.0, le=1.0, description="Max Gaussian noise std.")
    noise_probability: float = Field(0.3, ge=0.0, le=1.0)
    blur_sigma: float = Field(1.0, ge=0.0, le=5.0, description="Max Gaussian blur sigma.")
    blur_probability: float = Field(0.2, ge=0.0, le=1.0)


class AugmentConfig(_Section):
    """All augmentation; every part can be switched off."""

    enabled: bool = True
    flips: bool = True
    rot90: bool = True
    affine: AffineConfig = Field(default_factory=AffineConfig)
    elastic: ElasticConfig = Field(default_factory=ElasticConfig)
    intensity: IntensityConfig = Field(default_factory=IntensityConfig)


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Trains usefully in minutes on a 2-core CPU.
    "cpu-small": {"depth": 4, "base_filters": 16, "batch_norm": True, "dropout": 0.0},
    "cpu": {"depth": 4, "base_filters": 24, "batch_norm": True, "dropout": 0.0},
    # The original U-Net width; wants a GPU.
    "gpu": {"depth": 4, "base_filters": 32, "batch_norm": True, "dropout": 0.1},
    "gpu-large": {"depth": 5, "base_filters": 64, "batch_norm": True, "dropout": 0.2},
}


class ModelConfig(_Section):
    """2D U-Net architecture."""

    preset: str | None = Field(None, description="Name from MODEL_PRESETS; sets the fields below.")
    depth: int = Field(4, ge=1, le=6, description="Number of down-sampling steps.")
    base_filters: int = Field(16, ge=2, le=256, description="Filters of the first level.")
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout at the bottleneck.")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset"):
            name = data["preset"]
            if name not in MODEL_PRESETS:
                raise ValueError(f"unknown model preset {name!r}; choose from {sorted(MODEL_PRESETS)}")
            merged = dict(MODEL_PRESETS[name])
            merged.update({k: v for k, v in data.items() if k != "preset" and k not in merged})
            merged["preset"] = name
            return merged
        return data

    @property
    def multiple(self) -> int:
        """Spatial sizes fed to the network must be a multiple of this."""
        return 2**self.depth


class BorderWeightConfig(_Section):
    """Pixel weights that emphasize thin borders between touching objects
    (Ronneberger et al. 2015): w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))."""

    enabled: bool = False
    w0: float = Field(10.0, ge=0.0)
    sigma: float = Field(5.0, gt=0.0)


class TrainConfig(_Section):
    """Training recipe."""

    loss: Literal["bce", "dice", "bce_dice"] = "bce_dice"
    dice_smooth: float = Field(1.0, ge=0.0, description="Smoothing term of the Dice loss.")
    border_weights: BorderWeightConfig = Field(default_factory=BorderWeightConfig)
    learning_rate: float = Field(1e-3, gt=0.0, lt=1.0)
    batch_size: int = Field(4, ge=1, le=1024)
    patch_size: int = Field(256, ge=16, le=4096, description="Square training patch side.")
    epochs: int = Field(50, ge=1)
    steps_per_epoch: int = Field(50, ge=1)
    validation_steps: int | None = Field(
        None, ge=1, description="Batches per validation; None = whole validation set once."
    )
    max_minutes: float | None = Field(None, gt=0.0, description="Wall-clock budget.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without a better val loss."
    )
    lr_decay: Literal["none", "cosine"] = Field(
        "cosine", description="Cosine decay over the run (time-aware with a budget)."
    )
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto", description="auto = bfloat16 where the CPU/GPU supports it, else float32."
    )
    monitor: Literal["val_loss", "val_rand_fscore"] = Field(
        "val_loss", description="Validation score that picks the best checkpoint."
    )
    val_em_metrics: bool = Field(
        True, description="Also compute Rand F-score and VI on whole validation slices."
    )
    seed: int = 0
    init_from: str | None = Field(None, description="Model folder to warm-start from.")
    tensorboard: bool = True
    event_every_steps: int = Field(1, ge=1, description="Yield a step event every N batches.")


class PredictConfig(_Section):
    """Tiled prediction."""

    tile_size: int = Field(512, ge=16, le=8192)
    overlap: int = Field(32, ge=0, le=1024, description="Pixels shared by neighbouring tiles.")
    batch_size: int = Field(4, ge=1, le=256)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    tta: bool = Field(False, description="Average over the 8 flips/rotations (8x slower).")

    @model_validator(mode="after")
    def _overlap_smaller_than_tile(self) -> PredictConfig:
        if self.overlap * 2 >= self.tile_size:
            raise ValueError("predict.overlap must be less than half of predict.tile_size")
        return self


class Config(_Section):
    """A whole run: data, augmentation, model, training, prediction."""

    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    output: str | None = Field(None, description="Model folder written by training.")

    @model_validator(mode="after")
    def _patch_fits_network(self) -> Config:
        multiple = self.model.multiple
        if self.train.patch_size % multiple:
            raise ValueError(
                f"train.patch_size ({self.train.patch_size}) must be a multiple of "
                f"2**model.depth = {multiple}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (tuples as lists) suitable for YAML."""
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """Return a copy with dotted-key overrides, e.g. ``{"train.epochs": 3}``."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return Config.model_validate(data)


def _resolve_paths(config: Config, base: Path) -> Config:
    """Make relative data paths relative to the config file's folder."""
    data = config.to_dict()
    for key in ("images", "masks", "val_images", "val_masks"):
        value = data["data"].get(key)
        if value and not Path(value).expanduser().is_absolute():
            data["data"][key] = str((base / value).resolve())
    for section, key in (("train", "init_from"), (None, "output")):
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
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserInputError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserInputError(f"config {path} must be a mapping of sections, got {type(raw).__name__}")
    try:
        config = Config.model_validate(raw)
    except ValueError as exc:
        raise UserInputError(f"config {path} is invalid: {_short_validation_message(exc)}") from None
    return _resolve_paths(config, path.parent.resolve()) if resolve_paths else config


def _short_validation_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return "; ".join(parts)
    return str(exc)


def save_config(config: Config, path: str | Path) -> None:
    """Write the config as YAML atomically (temporary name, then rename)."""
    from .atomic import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))
