"""The optimizer of a training: ``train.optimizer`` (``adam``, ``adamw`` or ``sgd``).

* ``adam``: Keras Adam (the default, as before);
* ``adamw``: Adam with decoupled weight decay ``train.weight_decay`` (default 0.004,
  Keras' own);
* ``sgd``: stochastic gradient descent with ``train.momentum`` (default 0.9) and
  optionally ``train.weight_decay``.

The learning rate is set by the schedule before every step
(:meth:`~napari_unet.engine.training.steps._Steps.set_learning_rate`). Under
``mixed_float16`` the optimizer is wrapped in Keras' ``LossScaleOptimizer``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ADAMW_WEIGHT_DECAY", "make_optimizer"]

#: adamw's weight decay when ``train.weight_decay`` is not set (Keras' default).
ADAMW_WEIGHT_DECAY = 0.004


def make_optimizer(train_config: Any, loss_scale: bool = False) -> Any:
    """A Keras optimizer for ``train_config`` (a ``TrainConfig``).

    Parameters
    ----------
    train_config
        ``optimizer``, ``learning_rate``, ``momentum`` and ``weight_decay``.
    loss_scale
        Wrap it for dynamic loss scaling (``mixed_float16``).

    Returns
    -------
    keras.optimizers.Optimizer
        The optimizer, not yet built.
    """
    import keras

    name = getattr(train_config, "optimizer", "adam")
    lr = train_config.learning_rate
    decay = getattr(train_config, "weight_decay", None)
    if name == "adamw":
        decay = ADAMW_WEIGHT_DECAY if decay is None else decay
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=decay)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=lr, momentum=train_config.momentum, weight_decay=decay or None
        )
    else:
        optimizer = keras.optimizers.Adam(learning_rate=lr, weight_decay=decay or None)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
