"""TensorBoard extras written during training: step scalars and an image history.

* every ``train.tensorboard_every_steps`` batches: ``step/loss`` and
  ``step/learning_rate``;
* every ``train.tensorboard_images_every`` batches: ``val/image_label_prediction``,
  a few validation tiles shown as *image | label | prediction* side by side, so
  the masks can be watched forming (TensorBoard's Images tab has a step slider).

Epoch scalars (every loss and metric of ``history.json``) are written by
``train.py``. Only imported by training (TensorFlow is imported inside the
functions that need it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "log_step",
    "preview_tiles",
    "side_by_side",
    "write_step_scalars",
    "write_val_images",
]

#: Pixels of white between the three panels.
GAP = 2


def preview_tiles(prepared: Any, patch_size: int, count: int) -> Any:
    """``count`` validation tiles ``(n, P, P, 1)`` image and label, stacked as ``(2, n, P, P, 1)``
    (with several input channels, the pair ``(images (n, P, P, C), labels (n, P, P, 1))``).

    Tiles with labelled pixels are preferred and spread evenly over the
    validation set; the training data stands in without validation data.
    Returns None when there is nothing to show.
    """
    from ..data.pipeline import val_tiles

    images, masks, weights = prepared.val_images, prepared.val_masks, prepared.val_weights
    if images is None:
        images, masks, weights = prepared.train_images, prepared.train_masks, prepared.train_weights
    if images is None or not hasattr(images, "__len__") or len(images) == 0:
        return None  # nothing, or lazy training data (a PatchSource)
    task = "regression" if np.asarray(masks).dtype.kind == "f" else "multiclass"
    x, y, w = val_tiles(images, masks, weights, patch_size, task)  # targets as they are
    labelled = np.flatnonzero(w.reshape(len(w), -1).any(axis=1))
    pool = labelled if labelled.size else np.arange(len(x))
    pick = pool[np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(int)]
    if x.shape[-1] > 1:  # several input channels: the image tiles have their own shape
        return x[pick], y[pick]
    return np.stack([x[pick], y[pick]])


def side_by_side(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """``(n, P, P, 1)`` panels joined as ``(n, P, 3P + 2 GAP, 1)`` float32 in ``[0, 1]``."""
    n, p = image.shape[0], image.shape[1]
    gap = np.ones((n, p, GAP, 1), dtype=np.float32)
    panels = [
        np.clip(np.asarray(a, dtype=np.float32), 0.0, 1.0) for a in (image, label, prediction)
    ]
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=2)


def _displayable(label: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label and prediction panels in ``[0, 1]``: class indices (an arg-max of several
    output channels) divided by the last index; float targets (regression) and their
    prediction scaled together to the label's range; binary masks as they are."""
    classes = prediction.shape[-1]
    if classes > 1:
        top = float(classes - 1)
        return label / top, np.argmax(prediction, axis=-1)[..., None] / top
    if np.isin(label, (0.0, 1.0)).all():
        return label, prediction
    low, high = float(label.min()), float(label.max())
    scale = high - low if high > low else 1.0
    return (label - low) / scale, (prediction - low) / scale


def write_step_scalars(writer: Any, step: int, loss: float, learning_rate: float) -> None:
    """``step/loss`` and ``step/learning_rate`` at `step`."""
    import tensorflow as tf

    with writer.as_default(step=step):
        tf.summary.scalar("step/loss", float(loss))
        tf.summary.scalar("step/learning_rate", float(learning_rate))


def write_val_images(writer: Any, model: Any, preview: np.ndarray, step: int) -> None:
    """Predict the preview tiles and write *image | label | prediction* at `step`."""
    import tensorflow as tf

    x, y = preview
    prediction = np.asarray(model(tf.constant(x), training=False), dtype=np.float32)
    y, prediction = _displayable(y, prediction)
    x = x[..., :1]  # the first input channel is shown
    with writer.as_default(step=step):
        tf.summary.image(
            "val/image_label_prediction", side_by_side(x, y, prediction), max_outputs=len(x)
        )
    writer.flush()


def log_step(
    writer: Any,
    step: int,
    loss: float,
    learning_rate: float,
    model: Any,
    preview: np.ndarray | None,
    train_config: Any,
) -> None:
    """Write what is due after batch `step` (1-based) under ``train_config``'s intervals."""
    if step % train_config.tensorboard_every_steps == 0 or step == 1:
        write_step_scalars(writer, step, loss, learning_rate)
    every = train_config.tensorboard_images_every
    if preview is not None and every and (step % every == 0 or step == 1):
        write_val_images(writer, model, preview, step)
