"""Training as a generator of progress events, with a blocking wrapper.

:func:`train_iter` prepares the data, builds (or warm-starts) the U-Net and
runs a custom training loop; it yields a :class:`TrainEvent` every few batches
and after each validation, writes ``best.keras``/``last.keras`` atomically,
TensorBoard logs and the history, and honours a stop request within one batch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import TrainingStopped, UserInputError
from ..events import TrainEvent, drain
from ..model.model_folder import ModelFolder
from ..model.strategy import worker_output
from .schedules import lr_at

__all__ = ["PreparedData", "TrainResult", "prepare_data", "train", "train_iter"]


@dataclass
class PreparedData:
    """Normalized float32 images, {0,1} targets and per-pixel weights."""

    train_images: np.ndarray
    train_masks: np.ndarray
    train_weights: np.ndarray
    val_images: np.ndarray | None
    val_masks: np.ndarray | None
    val_weights: np.ndarray | None
    description: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What training produced."""

    model_dir: Path
    history: list[dict[str, Any]]
    best_score: float | None
    stopped_reason: str
    steps: int
    elapsed: float
    #: True if a fault (NaN loss, out of memory, full disk, an error in a step)
    #: ended training; `stopped_reason` says which. Checkpoints written before
    #: the fault are kept.
    failed: bool = False


def split_labels(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets and weights from a mask stack.

    Dense masks (two values) become a {0,1} target with weight 1. A sparse
    annotation layer (values 0 = unlabeled, 1 = background, 2 = foreground)
    becomes target ``mask == 2`` with weight 0 on unlabeled pixels.
    """
    values = np.unique(masks)
    if values.size and set(values.tolist()) <= {0, 1, 2} and 2 in values:
        return (masks == 2).astype(np.uint8), (masks > 0).astype(np.float32)
    from ..io.stacks import binarize_mask

    return binarize_mask(masks), np.ones(masks.shape, dtype=np.float32)


def _load_pair(images: Any, masks: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    from ..data.preprocess import as_stack
    from ..io.stacks import check_image, check_pair, read_stack

    if isinstance(images, (str, Path)):
        images = read_stack(images)
    if isinstance(masks, (str, Path)):
        masks = read_stack(masks)
    check_image(np.asarray(images), f"{what} images")
    check_image(np.asarray(masks), f"{what} masks")
    images, masks = as_stack(np.asarray(images)), as_stack(np.asarray(masks))
    check_pair(images, masks, f"{what} images", f"{what} masks")
    if np.iscomplexobj(masks) or np.isnan(masks.astype(np.float32, copy=False)).any():
        raise UserInputError(f"{what} masks contain NaN or complex values")
    return images, masks


def prepare_data(
    config: Config,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
) -> PreparedData:
    """Read, check, normalize and split the data named by `config` or given as arrays.

    The data may also come from ``data.dataset`` or ``data.frames`` (see
    :mod:`~napari_unet.engine.io.sources`); with ``data.patch_cache`` the prepared
    arrays are tiled and cached on disk (see :mod:`~napari_unet.engine.data.patch_cache`).
    Dask/zarr arrays and stacks larger than memory stay lazy: patches are read
    on demand (see :mod:`~napari_unet.engine.data.lazy_sources`).
    """
    from ..io.lazy import is_lazy_training_input

    if is_lazy_training_input(config, images):
        from ..data.lazy_sources import prepare_data as prepare_lazy_data

        return prepare_lazy_data(config, images, masks, val_images, val_masks)
    if config.data.patch_cache:
        from ..data.patch_cache import cached_prepare

        sources = (images, masks, val_images, val_masks)
        return cached_prepare(config, sources, lambda: _prepare_data(config, *sources))
    return _prepare_data(config, images, masks, val_images, val_masks)


def _prepare_data(config: Config, *sources: Any) -> PreparedData:
    """:func:`prepare_data` without the cache; `sources` = images, masks, val images, val masks."""
    from ..data.flatfield import correct_flat_field, estimate_flat_field
    from ..data.foreground import apply_foreground
    from ..data.preprocess import normalize_percentile, resize_stack, split_train_val
    from ..data.weights import border_weights_stack
    from ..io.sources import resolve_sources

    data_cfg = config.data
    images, masks, val_images, val_masks = resolve_sources(config, *sources)
    images = images if images is not None else data_cfg.images
    masks = masks if masks is not None else data_cfg.masks
    if images is None or masks is None:
        raise UserInputError("training needs images and masks (--images and --masks)")
    images, masks = _load_pair(images, masks, "training")
    explicit_val = val_images is not None or data_cfg.val_images is not None
    if explicit_val:
        val_images = val_images if val_images is not None else data_cfg.val_images
        val_masks = val_masks if val_masks is not None else data_cfg.val_masks
        if val_masks is None:
            raise UserInputError("validation images were given without validation masks")
        val_images, val_masks = _load_pair(val_images, val_masks, "validation")

    low, high = data_cfg.percentiles
    per_slice = data_cfg.normalization == "slice"
    sigma = data_cfg.flat_field_sigma
    field = estimate_flat_field(images, sigma) if data_cfg.flat_field else None

    def normalize(stack: np.ndarray) -> np.ndarray:
        if field is not None:
            stack = correct_flat_field(stack, field, sigma)
        if data_cfg.normalization == "none":
            out = np.asarray(stack, dtype=np.float32)
        else:
            out = normalize_percentile(stack, low, high, per_slice=per_slice)
        if data_cfg.resize is not None:
            out = resize_stack(out, tuple(data_cfg.resize), order=1)
        return out

    def targets(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if data_cfg.resize is not None:
            stack = resize_stack(stack, tuple(data_cfg.resize), order=0)
        target, weight = split_labels(stack)
        border = config.train.border_weights
        if border.enabled:
            weight = weight * border_weights_stack(target, border.w0, border.sigma)
        return target, weight.astype(np.float32)

    description: dict[str, Any] = {"train_slices": images.shape[0]}
    if explicit_val:
        train_idx = np.arange(images.shape[0])
        val_idx = np.array([], dtype=int)
    else:
        train_idx, val_idx = split_train_val(
            images.shape[0], data_cfg.val_fraction, config.train.seed
        )
    description["train_indices"] = [int(i) for i in train_idx]
    description["val_indices"] = [int(i) for i in val_idx]

    norm_images = normalize(images)
    target, weight = targets(masks)
    weight = apply_foreground(weight, norm_images, data_cfg.foreground)
    if weight[train_idx].sum() == 0:
        raise UserInputError("the training masks have no labelled pixels")
    prepared = PreparedData(
        train_images=norm_images[train_idx],
        train_masks=target[train_idx],
        train_weights=weight[train_idx],
        val_images=None,
        val_masks=None,
        val_weights=None,
        description=description,
    )
    if explicit_val:
        prepared.val_images = normalize(val_images)
        prepared.val_masks, prepared.val_weights = targets(val_masks)
        prepared.val_weights = apply_foreground(
            prepared.val_weights, prepared.val_images, data_cfg.foreground
        )
        description["val_slices"] = int(val_images.shape[0])
    elif len(val_idx):
        prepared.val_images = norm_images[val_idx]
        prepared.val_masks = target[val_idx]
        prepared.val_weights = weight[val_idx]
    return prepared


def resolve_precision(requested: str) -> str:
    """Map ``auto`` to the fastest exact-enough policy this machine offers."""
    if requested != "auto":
        return requested
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def build_training(config: Config, prepared: PreparedData) -> tuple[str, Any, _Steps, Any]:
    """Apply the device settings, seed, build (or warm-start) the model, compile the
    steps and make the endless training stream.

    Shared by :func:`train_iter` and the learning-rate finder.

    Returns
    -------
    precision, model, steps, train_ds
        The precision policy used, the Keras model, the compiled
        :class:`_Steps` and the ``tf.data`` stream of ``(x, y, w)`` batches.
    """
    import tensorflow as tf

    from ..data.pipeline import make_train_dataset
    from ..model.devices import configure_devices
    from ..model.strategy import distribute_dataset, make_strategy, strategy_scope

    configure_devices(config.train.device)
    strategy = make_strategy(config.train.distribute)  # None: one device
    tf.keras.utils.set_random_seed(config.train.seed)
    precision = resolve_precision(config.train.precision)
    with strategy_scope(strategy):
        model = _build_or_load(config, precision)
        steps = _Steps(model, config, strategy)
    train_ds = make_train_dataset(
        prepared.train_images,
        prepared.train_masks,
        prepared.train_weights,
        config,
        seed=config.train.seed,
    )
    return precision, model, steps, distribute_dataset(strategy, train_ds)


def _build_or_load(config: Config, precision: str) -> Any:
    import keras

    from ..model.model_folder import load_model
    from ..model.unet import build_unet

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_unet(config.model)
        if config.train.init_from:
            parent = load_model(config.train.init_from)
            if parent.config.model.model_dump(exclude={"preset"}) != config.model.model_dump(
                exclude={"preset"}
            ):
                raise UserInputError(
                    f"--init-from model {config.train.init_from} has another architecture "
                    "than the config's model section"
                )
            model.set_weights(parent.keras_model.get_weights())
        if config.train.freeze_batch_norm:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False  # Keras 3: also runs it in inference mode
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model


class _Steps:
    """The compiled training and validation steps."""

    def __init__(self, model: Any, config: Config, strategy: Any = None) -> None:
        import keras
        import tensorflow as tf

        from ..model.losses import make_loss
        from ..model.strategy import distributed_train_step, resolve_xla

        self.model = model
        loss_fn = make_loss(config.train)
        self.optimizer = keras.optimizers.Adam(learning_rate=config.train.learning_rate)
        if getattr(model.dtype_policy, "name", "") == "mixed_float16":  # dynamic loss scaling
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        self.optimizer.build(model.trainable_variables)
        jit = resolve_xla(config.train.distribute.xla)  # None (off) on CPU by default

        @tf.function(reduce_retracing=True, jit_compile=jit)
        def train_step(x, y, w):
            with tf.GradientTape() as tape:
                p = model(x, training=True)
                loss = loss_fn(y, p, w)
                scaled = self.optimizer.scale_loss(loss)  # `loss` itself unless mixed_float16
            grads = tape.gradient(scaled, model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss, _confusion(y, p, w)

        @tf.function(reduce_retracing=True)
        def val_step(x, y, w):
            p = model(x, training=False)
            labelled = tf.cast(w > 0, tf.float32)
            # sum of |mask - probability| over labelled pixels (the "pixel difference")
            diff = tf.reduce_sum(tf.abs(tf.cast(y, tf.float32) - tf.cast(p, tf.float32)) * labelled)
            return loss_fn(y, p, w), _confusion(y, p, w), tf.reduce_sum(labelled), diff

        def _confusion(y, p, w):
            labelled = tf.cast(w > 0, tf.float32)
            pred = tf.cast(p > 0.5, tf.float32)
            y = tf.cast(y, tf.float32)
            tp = tf.reduce_sum(pred * y * labelled)
            fp = tf.reduce_sum(pred * (1 - y) * labelled)
            fn = tf.reduce_sum((1 - pred) * y * labelled)
            tn = tf.reduce_sum((1 - pred) * (1 - y) * labelled)
            return tf.stack([tp, fp, fn, tn])

        if strategy is not None:  # tf.distribute: replicas share each global batch
            train_step = distributed_train_step(
                strategy, model, self.optimizer, loss_fn, _confusion, jit
            )
        self.train_step = train_step
        self.val_step = val_step

    def set_learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate.assign(value)


def _confusion_metrics(counts: np.ndarray) -> dict[str, float]:
    tp, fp, fn, tn = (float(v) for v in counts)
    total = tp + fp + fn + tn
    if total == 0:
        return {}
    dice = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    iou = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    return {"dice": dice, "iou": iou, "pixel_error": (fp + fn) / total}


def _validate(steps: _Steps, dataset: Any) -> dict[str, float]:
    total_loss = 0.0
    total_weight = 0.0
    total_diff = 0.0
    counts = np.zeros(4)
    for x, y, w in dataset:
        loss, confusion, labelled, diff = steps.val_step(x, y, w)
        labelled = float(labelled)
        total_loss += float(loss) * labelled
        total_weight += labelled
        total_diff += float(diff)
        counts += confusion.numpy()
    if total_weight == 0:
        return {}
    return {
        "loss": total_loss / total_weight,
        **_confusion_metrics(counts),
        # mean |mask - probability| in percent, as metrics.pixel_difference_percent
        "pixel_difference": 100.0 * total_diff / total_weight,
    }


def _rand_on_slices(model: Any, prepared: PreparedData, config: Config) -> dict[str, float]:
    """Whole-slice Rand F-score and VI of the validation slices (EM metrics)."""
    from ..evaluation.metrics import evaluate
    from ..inference.predict import predict_normalized

    generator = predict_normalized(
        model, prepared.val_images, config.predict, config.model.multiple
    )
    probability = drain(generator)
    mask = prepared.val_masks
    scores = evaluate(probability, mask, threshold=config.predict.threshold)
    overall = scores
    return {k: float(overall[k]) for k in ("rand_fscore", "vi") if k in overall}


def _model_folder(config: Config) -> ModelFolder:
    if config.output:
        return ModelFolder(Path(config.output))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return ModelFolder(Path("models") / f"unet-{stamp}")


def train_iter(
    config: Config,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
    stop: threading.Event | None = None,
    metadata: dict[str, Any] | None = None,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train a U-Net, yielding progress events.

    Parameters
    ----------
    config
        The run's configuration; ``config.output`` names the model folder.
    images, masks, val_images, val_masks
        Arrays or paths overriding ``config.data``.
    stop
        Set it to stop after the current batch; the best checkpoint is kept.
    metadata
        Extra facts stored in ``metadata.json`` (e.g. layer names).

    Returns
    -------
    TrainResult
        The model folder, history and why training ended.
    """
    stop = stop or threading.Event()
    started = time.perf_counter()
    config = _with_parent_architecture(config)
    prepared = prepare_data(config, images, masks, val_images, val_masks)
    config = worker_output(config)  # multi-worker training: non-chief workers write aside
    folder = _model_folder(config)
    folder.create()
    config = config.model_copy(update={"output": str(folder.path)})
    config = _keep_array_data(config, folder, images, masks)
    folder.save_config(config)

    import tensorflow as tf

    from ..data.pipeline import make_val_dataset

    precision, model, steps, train_ds = build_training(config, prepared)
    val_ds = None
    if prepared.val_images is not None:
        val_ds = make_val_dataset(
            prepared.val_images, prepared.val_masks, prepared.val_weights, config
        )
    writer = (
        tf.summary.create_file_writer(str(folder.logs_path)) if config.train.tensorboard else None
    )
    preview = None
    if writer is not None and config.train.tensorboard_images_every:
        from .tb_logging import preview_tiles

        preview = preview_tiles(prepared, config.train.patch_size, config.train.tensorboard_images)

    train_cfg = config.train
    total_steps = train_cfg.epochs * train_cfg.steps_per_epoch
    budget = train_cfg.max_minutes * 60 if train_cfg.max_minutes else None
    cpu_budget = train_cfg.max_cpu_minutes * 60 if train_cfg.max_cpu_minutes else None
    cpu_start = time.process_time()
    history: list[dict[str, Any]] = []
    monitor_rand = val_ds is not None and train_cfg.monitor == "val_rand_fscore"
    best: float | None = None
    epochs_without_gain = 0
    stopped_reason = "finished"
    failed = False
    step = 0
    yield TrainEvent(
        kind="start",
        total_epochs=train_cfg.epochs,
        total_steps=total_steps,
        elapsed=time.perf_counter() - started,
        model_dir=str(folder.path),
        message=f"training {precision} on {prepared.train_images.shape[0]} slices; "
        f"model folder {folder.path}",
    )
    loop_start = time.perf_counter()
    iterator = iter(train_ds)
    try:
        for epoch in range(1, train_cfg.epochs + 1):
            epoch_loss = 0.0
            counts = np.zeros(4)
            for batch_in_epoch in range(1, train_cfg.steps_per_epoch + 1):
                if stop.is_set():
                    stopped_reason = "stopped by the user"
                    break
                elapsed = time.perf_counter() - loop_start
                progress = step / total_steps
                if budget:
                    progress = max(progress, elapsed / budget)
                if cpu_budget:
                    progress = max(progress, (time.process_time() - cpu_start) / cpu_budget)
                lr = lr_at(step, train_cfg.steps_per_epoch, total_steps, train_cfg, progress)
                steps.set_learning_rate(lr)
                x, y, w = next(iterator)
                loss, confusion = steps.train_step(x, y, w)
                loss = float(loss)
                if not math.isfinite(loss):
                    raise TrainingStopped(
                        f"the loss became {loss} at step {step + 1}; try a lower learning rate"
                    )
                step += 1
                epoch_loss += loss
                counts += confusion.numpy()
                if writer is not None:
                    from .tb_logging import log_step

                    log_step(writer, step, loss, lr, model, preview, train_cfg)
                if (
                    step % train_cfg.event_every_steps == 0
                    or batch_in_epoch == train_cfg.steps_per_epoch
                ):
                    elapsed = time.perf_counter() - loop_start
                    eta = _eta(elapsed, step, total_steps, budget)
                    yield TrainEvent(
                        kind="step",
                        epoch=epoch,
                        total_epochs=train_cfg.epochs,
                        step=step,
                        total_steps=total_steps,
                        loss=epoch_loss / batch_in_epoch,
                        metrics=_confusion_metrics(counts),
                        learning_rate=lr,
                        elapsed=time.perf_counter() - started,
                        eta=eta,
                        model_dir=str(folder.path),
                    )
                if (budget and time.perf_counter() - loop_start >= budget) or (
                    cpu_budget and time.process_time() - cpu_start >= cpu_budget
                ):
                    stopped_reason = "time budget reached"
                    break
            batches = batch_in_epoch if stopped_reason == "finished" else max(batch_in_epoch - 1, 1)
            if stopped_reason == "stopped by the user" and batch_in_epoch == 1:
                break
            record: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "loss": epoch_loss / batches,
                **{f"train_{k}": v for k, v in _confusion_metrics(counts).items()},
                "learning_rate": lr,
                "elapsed": time.perf_counter() - started,
            }
            val: dict[str, float] = {}
            if val_ds is not None:
                val = _validate(steps, val_ds)
                if train_cfg.val_em_metrics:
                    val.update(_rand_on_slices(model, prepared, config))
            record.update({f"val_{k}": v for k, v in val.items()})
            history.append(record)
            score = _score(record, monitor_rand)
            improved = best is None or score > best or train_cfg.monitor == "last"
            folder.save_weights_file(model, "last")
            if improved:
                best = score
                epochs_without_gain = 0
                folder.save_weights_file(model, "best")
            else:
                epochs_without_gain += 1
            folder.save_json(folder.history_path, history)
            if writer is not None:
                _write_scalars(writer, record, step)
            elapsed = time.perf_counter() - loop_start
            yield TrainEvent(
                kind="epoch",
                epoch=epoch,
                total_epochs=train_cfg.epochs,
                step=step,
                total_steps=total_steps,
                loss=record["loss"],
                metrics=_confusion_metrics(counts),
                val=val,
                learning_rate=lr,
                elapsed=time.perf_counter() - started,
                eta=_eta(elapsed, step, total_steps, budget),
                model_dir=str(folder.path),
                message="new best checkpoint" if improved else "",
            )
            if stopped_reason != "finished":
                break
            if (
                train_cfg.early_stopping_patience
                and epochs_without_gain >= train_cfg.early_stopping_patience
            ):
                stopped_reason = f"early stopping: no improvement in {epochs_without_gain} epochs"
                break
    except TrainingStopped as exc:
        stopped_reason, failed = str(exc), True
    except tf.errors.ResourceExhaustedError:
        stopped_reason, failed = "out of memory: lower the batch size or the patch size", True
    except UserInputError as exc:  # e.g. the disk filled up while saving a checkpoint
        stopped_reason, failed = str(exc), True
    except Exception as exc:  # any other fault: one clear line, traceback in the folder
        stopped_reason, failed = _fault_message(exc, step, folder), True
    finally:
        if writer is not None:
            writer.close()
    if not folder.best_path.exists() and step > 0 and not failed:
        folder.save_weights_file(model, "best")
    elapsed = time.perf_counter() - started
    summary = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parent": config.train.init_from,
        "precision": precision,
        "data": prepared.description,
        "steps": step,
        "elapsed_seconds": elapsed,
        "stopped_reason": stopped_reason,
        "failed": failed,
        "best_score": best,
        "monitor": _monitor_name(train_cfg.monitor, monitor_rand, val_ds is not None),
        "final": history[-1] if history else {},
        **(metadata or {}),
    }
    try:
        folder.save_json(folder.metadata_path, summary)
    except UserInputError as exc:  # e.g. a full disk: still end with a final event
        if not failed:
            stopped_reason, failed = str(exc), True
    finished = stopped_reason in ("finished", "time budget reached")
    yield TrainEvent(
        kind="done" if finished else "stopped",
        epoch=len(history),
        total_epochs=train_cfg.epochs,
        step=step,
        total_steps=total_steps,
        loss=history[-1]["loss"] if history else None,
        val={k[4:]: v for k, v in (history[-1] if history else {}).items() if k.startswith("val_")},
        elapsed=elapsed,
        eta=0.0,
        model_dir=str(folder.path),
        message=stopped_reason,
    )
    return TrainResult(
        model_dir=folder.path,
        history=history,
        best_score=best,
        stopped_reason=stopped_reason,
        steps=step,
        elapsed=elapsed,
        failed=failed,
    )


def _fault_message(exc: Exception, step: int, folder: ModelFolder) -> str:
    """One line for an unexpected error inside the training loop; the traceback
    goes to ``train-error.log`` in the model folder (never to the user's screen)."""
    import traceback

    from ..atomic import atomic_write_text

    where = ""
    try:
        log = folder.path / "train-error.log"
        atomic_write_text(log, "".join(traceback.format_exception(exc)))
        where = f" (details in {log})"
    except (UserInputError, OSError):
        pass
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    kept = "no checkpoint yet"
    if folder.best_path.exists():
        kept = "the best checkpoint so far is kept"
    return f"training failed after {step} steps: {reason}; {kept}{where}"


#: In-memory training data up to this size is stored in the model folder (for replay when
#: fine-tuning on corrections later); larger data is not copied.
KEEP_DATA_BYTES = 256 * 2**20


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
    """When warm-starting, the network must be the parent's: take its model section."""
    if not config.train.init_from:
        return config
    parent_dir = Path(config.train.init_from)
    if not (parent_dir / "config.yaml").exists():
        raise UserInputError(f"--init-from {parent_dir} is not a model folder (no config.yaml)")
    parent_model = ModelFolder(parent_dir).load_config().model
    try:
        return Config.model_validate({**config.to_dict(), "model": parent_model.model_dump()})
    except ValueError as exc:
        raise UserInputError(f"cannot warm-start from {parent_dir}: {exc}") from None


def _monitor_name(requested: str, monitor_rand: bool, has_val: bool) -> str:
    """What picked the best checkpoint, as recorded in metadata.json."""
    if requested == "last":
        return "last"
    if monitor_rand:
        return "val_rand_fscore"
    return "val_loss" if has_val else "loss"


def _score(record: dict[str, Any], monitor_rand: bool) -> float:
    """Higher is better."""
    if monitor_rand and "val_rand_fscore" in record:
        return float(record["val_rand_fscore"])
    if "val_loss" in record:
        return -float(record["val_loss"])
    return -float(record["loss"])


def _eta(elapsed: float, step: int, total_steps: int, budget: float | None) -> float | None:
    if step == 0:
        return None
    by_steps = elapsed / step * (total_steps - step)
    return min(by_steps, max(budget - elapsed, 0.0)) if budget else by_steps


def _write_scalars(writer: Any, record: dict[str, Any], step: int) -> None:
    import tensorflow as tf

    with writer.as_default(step=step):
        for key, value in record.items():
            if key in ("epoch", "step", "elapsed"):
                continue
            tf.summary.scalar(key, float(value))
    writer.flush()


def train(
    config: Config,
    images: Any = None,
    masks: Any = None,
    val_images: Any = None,
    val_masks: Any = None,
    callback: Callable[[TrainEvent], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Blocking form of :func:`train_iter`; `callback(event)` sees every event."""
    return drain(train_iter(config, images, masks, val_images, val_masks, stop), callback)
