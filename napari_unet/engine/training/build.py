"""Building what a training runs with: the model, its compiled steps and the data streams.

:func:`build_training` (shared with the learning-rate finder) applies the
device settings and the seed, builds or warm-starts the U-Net under the
precision policy and compiles its :class:`~napari_unet.engine.training.steps._Steps`;
:func:`build_run` adds the validation stream and the TensorBoard writer and
gathers all of it in a :class:`TrainingRun`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..data.prepared_data import PreparedData
from ..errors import UserInputError
from ..model.model_folder import ModelFolder
from ..model.precision import resolve_precision
from .steps import _Steps

__all__ = ["TrainingRun", "build_run", "build_training"]


@dataclass
class TrainingRun:
    """Everything the epoch loop works with, built once per training.

    Attributes
    ----------
    config
        The run's configuration, with ``output`` set to the model folder.
    prepared
        The prepared training and validation data.
    folder
        The model folder (created, with ``config.yaml`` written).
    precision
        The Keras precision policy the model was built with.
    model
        The Keras model being trained.
    steps
        Its compiled training and validation steps (None when stopped while building).
    train_ds
        The endless ``tf.data`` stream of ``(x, y, w)`` training batches (empty when
        stopped while building).
    val_ds
        The validation batches, or None without validation data.
    writer
        The TensorBoard summary writer, or None with ``train.tensorboard`` off.
    preview
        The image tiles logged to TensorBoard, or None.
    """

    config: Config
    prepared: PreparedData
    folder: ModelFolder
    precision: str
    model: Any
    steps: _Steps | None
    train_ds: Any
    val_ds: Any | None
    writer: Any | None
    preview: Any | None


def build_run(
    config: Config,
    prepared: PreparedData,
    folder: ModelFolder,
    stop: threading.Event | None = None,
) -> TrainingRun:
    """Build the model, steps, data streams and TensorBoard writer of a training.

    Parameters
    ----------
    config
        The run's configuration.
    prepared
        The prepared data.
    folder
        The model folder; its ``logs`` folder receives the TensorBoard events.
    stop
        Once set, what is left is skipped (see :func:`build_training`; no validation
        stream, no TensorBoard writer): the loop then ends before its first batch.

    Returns
    -------
    TrainingRun
        What :class:`~napari_unet.engine.training.loop.TrainingLoop` runs.
    """
    import tensorflow as tf

    from ..data.pipeline import make_val_dataset

    precision, model, steps, train_ds = build_training(config, prepared, stop)
    val_ds = None
    if stop is not None and stop.is_set():  # stopped: the loop ends before its first batch
        return TrainingRun(config, prepared, folder, precision, model, steps, (), None, None, None)
    if prepared.val_images is not None:
        val_ds = make_val_dataset(
            prepared.val_images, prepared.val_masks, prepared.val_weights, config
        )
        if config.train.validation_steps:  # at most this many batches per validation
            val_ds = val_ds.take(config.train.validation_steps)
    writer = (
        tf.summary.create_file_writer(str(config.train.log_dir or folder.logs_path))
        if config.train.tensorboard
        else None
    )
    preview = None
    if writer is not None and config.train.tensorboard_images_every:
        from .tb_logging import preview_tiles

        preview = preview_tiles(prepared, config.train.patch_size, config.train.tensorboard_images)
    return TrainingRun(
        config=config,
        prepared=prepared,
        folder=folder,
        precision=precision,
        model=model,
        steps=steps,
        train_ds=train_ds,
        val_ds=val_ds,
        writer=writer,
        preview=preview,
    )


def build_training(
    config: Config, prepared: PreparedData, stop: threading.Event | None = None
) -> tuple[str, Any, _Steps | None, Any]:
    """Apply the device settings, seed, build (or warm-start) the model, compile the
    steps and make the endless training stream.

    Shared by :func:`train_iter` and the learning-rate finder. A set `stop` skips
    what is left after the model is built: the steps are then None and the training
    stream is empty (the model is still returned, to be saved as it is).

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
    precision = resolve_precision(
        config.train.precision,
        config.model,
        config.train.patch_size,
        config.train.batch_size,
        "train",
        _channels(prepared.train_images),
    )
    with strategy_scope(strategy):
        model = _build_or_load(config, precision)
        if stop is not None and stop.is_set():
            return precision, model, None, ()
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
    """Build the U-Net under the `precision` policy, warm-started from ``train.init_from``.

    Parameters
    ----------
    config
        The run's configuration (``model`` and ``train`` sections).
    precision
        A Keras policy name; the global policy is restored afterwards.

    Returns
    -------
    keras.Model
        The model, with frozen batch normalization if ``train.freeze_batch_norm`` and a
        frozen contracting path if ``train.freeze_encoder``.

    Raises
    ------
    UserInputError
        If the ``init_from`` model has another architecture.
    """
    import keras

    from ..model.model_folder import load_model
    from ..model.unet import build_unet
    from ..model.weights_io import is_weights_file, load_weights_file, same_architecture

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_unet(config.model)
        if is_weights_file(config.train.init_from):  # .weights.h5 / .h5 of this network
            load_weights_file(model, config.train.init_from)
        elif config.train.init_from:
            parent = load_model(config.train.init_from)
            if not same_architecture(parent.config.model, config.model):
                raise UserInputError(
                    f"--init-from model {config.train.init_from} has another architecture "
                    "than the config's model section"
                )
            model.set_weights(parent.keras_model.get_weights())
        if config.train.freeze_batch_norm:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False  # Keras 3: also runs it in inference mode
        if config.train.freeze_encoder:
            for layer in model.layers:
                if layer.name.startswith("down"):  # down{level}_conv / _bn of the encoder
                    layer.trainable = False
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model


def _channels(train_images: Any) -> int:
    """Input channels of the training stack (an array or a lazy source, which has one)."""
    shape = tuple(getattr(train_images, "shape", ()))
    return int(shape[-1]) if len(shape) == 4 else 1
