"""The compiled training and validation steps, and the metrics they add up to.

:class:`_Steps` holds the optimizer and the ``tf.function`` train and
validation steps of one model; :func:`_validate` runs the validation step over
a dataset and :func:`_confusion_metrics` turns summed confusion counts into
Dice, IoU and pixel error. :func:`_rand_on_slices` adds the whole-slice EM
metrics (Rand F-score, VI).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Config
from ..data.prepared_data import PreparedData
from ..events import drain


class _Steps:
    """The compiled training and validation steps.

    Parameters
    ----------
    model
        The Keras model, built in the strategy's scope if there is one.
    config
        The run's configuration (loss, learning rate, XLA).
    strategy
        A ``tf.distribute`` strategy, or None for one device.

    Attributes
    ----------
    model
        The model the steps train.
    optimizer
        Adam (wrapped in a loss-scale optimizer under ``mixed_float16``).
    train_step
        ``train_step(x, y, w) -> (loss, confusion)``: one optimizer step.
    val_step
        ``val_step(x, y, w) -> (loss, confusion, labelled, diff)``.
    """

    def __init__(self, model: Any, config: Config, strategy: Any = None) -> None:
        import tensorflow as tf

        from ..model.strategy import distributed_train_step, resolve_xla
        from ..model.task_losses import make_task_loss
        from .optimizers import make_optimizer
        from .task_metrics import counts_fn, difference_fn

        self.model = model
        self.config = config
        loss_fn = make_task_loss(config)  # the loss of model.task (config_tasks.py)
        mixed16 = getattr(model.dtype_policy, "name", "") == "mixed_float16"
        self.optimizer = make_optimizer(config.train, loss_scale=mixed16)  # train.optimizer
        task_difference = difference_fn(config)
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
            if task_difference is not None:
                diff = task_difference(y, p, labelled)
            else:
                diff = tf.reduce_sum(
                    tf.abs(tf.cast(y, tf.float32) - tf.cast(p, tf.float32)) * labelled
                )
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

        if config.model.task != "binary":  # per-class or regression sums (task_metrics.py)
            _confusion = counts_fn(config)

        if strategy is not None:  # tf.distribute: replicas share each global batch
            train_step = distributed_train_step(
                strategy, model, self.optimizer, loss_fn, _confusion, jit
            )
        self.train_step = train_step
        self.val_step = val_step

    def set_learning_rate(self, value: float) -> None:
        """Use `value` as the optimizer's learning rate from the next step on."""
        self.optimizer.learning_rate.assign(value)


def _confusion_metrics(counts: np.ndarray) -> dict[str, float]:
    """Dice, IoU, pixel error and pixel accuracy from summed ``(tp, fp, fn, tn)`` counts
    (the other tasks' count vectors: :func:`~.task_metrics.summarize_counts`).

    Parameters
    ----------
    counts
        The four confusion counts over the labelled pixels.

    Returns
    -------
    dict
        ``dice``, ``iou``, ``pixel_error`` and ``pixel_accuracy``; empty if no pixel
        was counted.
    """
    from .task_metrics import summarize_counts

    return summarize_counts(counts)


def _validate(steps: _Steps, dataset: Any) -> dict[str, float]:
    """Run the validation step over `dataset`.

    Parameters
    ----------
    steps
        The compiled steps.
    dataset
        ``(x, y, w)`` batches of the validation slices.

    Returns
    -------
    dict
        Weighted mean ``loss``, the confusion metrics and ``pixel_difference``
        (mean absolute mask - probability in percent); empty if no pixel is labelled.
    """
    total_loss = 0.0
    total_weight = 0.0
    total_diff = 0.0
    from .task_metrics import summarize_counts

    config = getattr(steps, "config", None)
    counts: Any = 0.0  # the task's count vector (task_metrics.py)
    for x, y, w in dataset:
        loss, confusion, labelled, diff = steps.val_step(x, y, w)
        labelled = float(labelled)
        total_loss += float(loss) * labelled
        total_weight += labelled
        total_diff += float(diff)
        counts = counts + confusion.numpy()
    if total_weight == 0:
        return {}
    result = {"loss": total_loss / total_weight, **summarize_counts(counts, config)}
    if getattr(getattr(config, "model", None), "task", "binary") != "regression":
        # mean |mask - probability| in percent, as metrics.pixel_difference_percent
        result["pixel_difference"] = 100.0 * total_diff / total_weight
    return result


def _rand_on_slices(model: Any, prepared: PreparedData, config: Config) -> dict[str, float]:
    """Whole-slice Rand F-score and VI of the validation slices (EM metrics; binary only)."""
    if config.model.task != "binary":
        return {}
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
