"""The sections of a run's :class:`~napari_unet.engine.config.Config` (pydantic models).

Data (:class:`DataConfig` with :class:`FramesConfig`, :class:`ForegroundConfig`),
augmentation (:class:`AugmentConfig` with :class:`AffineConfig`,
:class:`ElasticConfig`, :class:`IntensityConfig`), network (:class:`ModelConfig`
and its :data:`MODEL_PRESETS`), training (:class:`TrainConfig` with
:class:`BorderWeightConfig`, :class:`ScheduleConfig`, :class:`DeviceConfig`,
:class:`DistributeConfig`) and prediction (:class:`PredictConfig`). Every
section forbids unknown keys and validates on assignment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config_tasks import SplitConfig

__all__ = [
    "MODEL_PRESETS",
    "AffineConfig",
    "AugmentConfig",
    "BorderWeightConfig",
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
]


class _Section(BaseModel):
    """Base for all config sections: strict keys, validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FramesConfig(_Section):
    """A folder of 2D frames ``im_c###_z###_t###_p###.png`` described by ``frames_meta.csv``
    (microDL layout): which frames are images and which channel holds the masks."""

    folder: str | None = Field(None, description="Frames folder (default: data.images).")
    channels: list[int] = Field([0], min_length=1, description="Image channel indices.")
    slices: list[int] | None = Field(None, description="Slice (z) indices; None = all.")
    times: list[int] | None = Field(None, description="Time indices; None = all.")
    positions: list[int] | None = Field(None, description="Position indices; None = all.")
    mask_channel: int | None = Field(
        None, description="Channel index holding the masks (the target of a regression)."
    )
    as_channels: bool | None = Field(
        None,
        description="Stack the frames of `channels` at one slice, time and position as the "
        "input channels of one slice. None: when model.in_channels is the number of channels, "
        "or model.task is not binary; else every frame is a slice of its own (as before).",
    )


class ForegroundConfig(_Section):
    """Otsu foreground masking of the loss: outside the foreground the pixel weight
    becomes 0 (``restrict``) or ``weight`` (``weight``)."""

    mode: Literal["off", "restrict", "weight"] = "off"
    weight: float = Field(0.1, ge=0.0, le=1.0, description="Weight outside (mode 'weight').")
    per_slice: bool = Field(True, description="One Otsu threshold per slice (else per stack).")


class DataConfig(_Section):
    """Where the training data lives and how it is prepared."""

    images: str | None = Field(None, description="Image stack, single image or folder of slices.")
    masks: str | None = Field(
        None, description="Mask stack/folder matching `images` slice by slice."
    )
    val_images: str | None = Field(None, description="Explicit validation images (else a split).")
    val_masks: str | None = Field(None, description="Explicit validation masks.")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of slices held out when no val files are given."
    )
    normalization: Literal["stack", "slice", "none"] = Field(
        "stack",
        description="Percentile normalization over the whole stack or per slice; 'none' for "
        "input that is already normalized float data.",
    )
    percentiles: tuple[float, float] = Field(
        (1.0, 99.8), description="Low/high percentiles mapped to 0 and 1."
    )
    resize: tuple[int, int] | None = Field(
        None, description="Resize every slice to (height, width) before training/prediction."
    )
    dataset: str | None = Field(
        None, description="Dataset root with train/images, train/masks (val/, test/ optional)."
    )
    frames: FramesConfig | None = Field(None, description="Read a frames folder (microDL).")
    flat_field: bool = Field(
        False, description="Divide out a flat field estimated as the heavily blurred mean image."
    )
    flat_field_sigma: float = Field(
        0.125, gt=0.0, le=1.0, description="Flat-field blur sigma as a fraction of the image side."
    )
    foreground: ForegroundConfig = Field(default_factory=ForegroundConfig)
    patch_cache: str | None = Field(
        None, description="Folder caching the prepared data as .npz tiles across runs."
    )
    cache_tile: int | None = Field(
        None, ge=16, description="Side of cached training tiles (default 2 x train.patch_size)."
    )
    split: SplitConfig | None = Field(
        None, description="Train/val/test slices by index (instead of val_fraction)."
    )
    target_normalization: Literal["zscore", "zscore_slice", "percentile", "none"] = Field(
        "zscore",
        description="model.task regression: how the float target is normalized (microDL: "
        "z-score over the stack, or per slice); the statistics are kept in metadata.json.",
    )
    mask_kind: Literal["auto", "binary", "sparse", "instances"] = Field(
        "auto",
        description="What mask values mean: binary (two values, the lower is background), "
        "sparse (0 unlabeled, 1 background, 2 foreground), instances (0 background, one value "
        "per object); auto decides where the values are unambiguous and says what it chose.",
    )

    @field_validator("percentiles")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        """Require ``0 <= low < high <= 100``."""
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
    task: Literal["binary", "multiclass", "regression"] = Field(
        "binary",
        description="binary: sigmoid mask; multiclass: softmax over `classes`; "
        "regression: a linear float image (see engine/config_tasks.py).",
    )
    classes: list[str] | None = Field(
        None,
        description="multiclass: class names, index 0 first, e.g. "
        "[background, membrane, mitochondria]; mask value k is class k.",
    )
    in_channels: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Input channels; None = from the data (a (Z, C, Y, X) stack or the "
        "frames' channels), 1 for grey stacks. The model folder stores the resolved value.",
    )

    @model_validator(mode="after")
    def _classes_fit_task(self) -> ModelConfig:
        """Require two or more distinct class names for multiclass, none otherwise."""
        if self.task == "multiclass":
            if not self.classes or len(self.classes) < 2:
                raise ValueError(
                    "model.task multiclass needs model.classes: two or more class names, "
                    "e.g. [background, membrane, mitochondria]"
                )
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"model.classes must be distinct, got {self.classes}")
        elif self.classes is not None:
            raise ValueError("model.classes applies to model.task multiclass only")
        return self

    @property
    def out_channels(self) -> int:
        """Output channels: one per class for multiclass, else one."""
        return len(self.classes) if self.task == "multiclass" and self.classes else 1

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill the fields from ``MODEL_PRESETS[preset]``; a field given explicitly wins
        (``{preset: cpu-small, depth: 2}`` builds depth 2), so a saved config, which holds
        every resolved field, rebuilds its network even if the presets change later."""
        if isinstance(data, dict) and data.get("preset"):
            name = data["preset"]
            if not isinstance(name, str) or name not in MODEL_PRESETS:
                raise ValueError(
                    f"unknown model preset {name!r}; choose from {sorted(MODEL_PRESETS)}"
                )
            merged = dict(MODEL_PRESETS[name])
            merged.update({k: v for k, v in data.items() if k != "preset"})
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


class ScheduleConfig(_Section):
    """Learning-rate schedule around ``train.learning_rate`` (see ``engine/training/schedules.py``).

    ``constant``; ``cosine`` decay to ``min_fraction`` (time-aware with a budget);
    ``step`` decay by ``drop`` every ``drop_every``; cyclical ``triangular``,
    ``triangular2`` and ``exp_range`` (Smith 2015) between ``learning_rate`` and
    ``max_lr`` with half-cycle ``step_size``. ``step_unit`` sets the unit of
    ``step_size`` and ``drop_every``.
    """

    kind: Literal["constant", "cosine", "step", "triangular", "triangular2", "exp_range"] = "cosine"
    min_fraction: float = Field(0.02, ge=0.0, le=1.0, description="Cosine floor / base.")
    max_lr: float | None = Field(
        None, gt=0.0, lt=1.0, description="Cyclical peak; None = 4 x train.learning_rate."
    )
    step_size: float = Field(4.0, gt=0.0, description="Cyclical half-cycle length.")
    step_unit: Literal["epochs", "iterations"] = "epochs"
    gamma: float = Field(0.99994, gt=0.0, le=1.0, description="exp_range decay per iteration.")
    drop: float = Field(0.5, gt=0.0, le=1.0, description="Step decay factor.")
    drop_every: float = Field(10.0, gt=0.0, description="Step decay period.")


class DeviceConfig(_Section):
    """Which GPU TensorFlow uses and how it takes memory (no effect without GPUs)."""

    gpu: int | None = Field(None, ge=0, description="GPU index; None = every GPU visible.")
    memory_growth: bool = Field(False, description="Allocate GPU memory as needed.")
    memory_limit_mb: int | None = Field(None, ge=64, description="Cap GPU memory (MB).")
    memory_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="Cap GPU memory as a fraction of the card's total."
    )

    @model_validator(mode="after")
    def _one_memory_policy(self) -> DeviceConfig:
        """Allow at most one of memory growth, a limit in MB and a fraction."""
        chosen = [self.memory_growth, self.memory_limit_mb is not None]
        chosen.append(self.memory_fraction is not None)
        if sum(chosen) > 1:
            raise ValueError("choose one of memory_growth, memory_limit_mb and memory_fraction")
        return self


class DistributeConfig(_Section):
    """Training on several devices with ``tf.distribute`` (see ``engine/model/strategy.py``).

    ``none``: one device (the default, unchanged). ``mirrored``: synchronous
    data parallelism over the GPUs of this machine (`devices`, default all; on
    a machine without GPUs, its CPU devices). ``multi_worker``: over several
    machines, each running the same command with its own ``TF_CONFIG``.
    ``train.batch_size`` is the global batch, split evenly over the replicas.
    """

    strategy: Literal["none", "mirrored", "multi_worker"] = "none"
    devices: list[str] | None = Field(
        None, description='Devices for "mirrored", e.g. ["/gpu:0", "/gpu:1"]; None = all GPUs.'
    )
    xla: Literal["auto", "on", "off"] = Field(
        "auto", description="XLA-compile the training step; auto = on with GPUs, off on CPU."
    )


class TrainConfig(_Section):
    """Training recipe."""

    loss: Literal["bce", "dice", "bce_dice", "ce", "ce_dice", "l1", "l2", "ssim", "l1_ssim"] = (
        Field("bce_dice", description="Per task (config_tasks.TASK_LOSSES); default its first.")
    )
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd momentum.")
    weight_decay: float | None = Field(
        None, ge=0.0, lt=1.0, description="Decoupled weight decay; None = adamw 0.004, else 0."
    )
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
    max_cpu_minutes: float | None = Field(
        None, gt=0.0, description="CPU-time budget (all threads of the process)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without a better val loss."
    )
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description="auto measures a few training steps in float32 and in the mixed policy "
        "of the device (bfloat16 on CPUs, float16 on GPUs) once per machine and network, and "
        "picks the faster.",
    )
    monitor: Literal["val_loss", "val_rand_fscore", "last"] = Field(
        "val_loss", description="Validation score that picks the best checkpoint."
    )
    val_em_metrics: bool = Field(
        True, description="Also compute Rand F-score and VI on whole validation slices."
    )
    seed: int = 0
    init_from: str | None = Field(
        None, description="Model folder, or a .weights.h5/.h5 file of the same network."
    )
    log_dir: str | None = Field(None, description="TensorBoard folder; None = <model>/logs.")
    freeze_batch_norm: bool = Field(
        False,
        description="Keep batch-norm statistics and scales fixed (fine-tuning on a few slices).",
    )
    freeze_encoder: bool = Field(
        False,
        description="Keep the contracting path's convolutions fixed and train the bottom and "
        "the decoder only (fine-tuning on a few slices: the features stay, the decisions adapt).",
    )
    tensorboard: bool = True
    tensorboard_every_steps: int = Field(
        10, ge=1, description="Write the step loss and learning rate every N batches."
    )
    tensorboard_images_every: int | None = Field(
        100, ge=1, description="Write validation image | label | prediction every N batches."
    )
    tensorboard_images: int = Field(3, ge=1, le=16, description="Validation tiles shown.")
    event_every_steps: int = Field(1, ge=1, description="Yield a step event every N batches.")
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    distribute: DistributeConfig = Field(default_factory=DistributeConfig)

    @model_validator(mode="before")
    @classmethod
    def _migrate_lr_decay(cls, data: Any) -> Any:
        """Old configs had ``lr_decay: none | cosine``; it becomes ``schedule.kind``."""
        if isinstance(data, dict) and "lr_decay" in data:
            data = dict(data)
            decay = data.pop("lr_decay")
            if decay not in ("none", "cosine"):
                raise ValueError(f"lr_decay must be 'none' or 'cosine', got {decay!r}")
            if "schedule" not in data:
                data["schedule"] = {"kind": "constant" if decay == "none" else "cosine"}
        return data


class PredictConfig(_Section):
    """Tiled prediction."""

    tile_size: int = Field(512, ge=16, le=8192)
    overlap: int = Field(32, ge=0, le=1024, description="Pixels shared by neighbouring tiles.")
    batch_size: int = Field(4, ge=1, le=256)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    tta: bool = Field(False, description="Average over the 8 flips/rotations (8x slower).")
    csv_columns: Literal["img,pixels", "ImageId,EncodedPixels"] = Field(
        "img,pixels", description="Header of an RLE CSV (Kaggle ultrasound nerve: img,pixels)."
    )
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description="Policy prediction runs in; auto measures float32 against the mixed "
        "policy of the device once per machine and network, and picks the faster.",
    )

    @model_validator(mode="after")
    def _overlap_smaller_than_tile(self) -> PredictConfig:
        """Require ``2 * overlap < tile_size``."""
        if self.overlap * 2 >= self.tile_size:
            raise ValueError("predict.overlap must be less than half of predict.tile_size")
        return self
