"""Learning-rate schedules as pure functions of the training step (no TensorFlow).

``train.schedule.kind`` picks one:

``constant``
    ``learning_rate`` throughout.
``cosine``
    ``lr = base * (f + (1 - f) * (1 + cos(pi * progress)) / 2)`` with
    ``f = min_fraction``; ``progress`` runs from 0 to 1 over the planned steps, or
    over the wall-clock budget when that ends training first.
``step``
    ``lr = base * drop ** floor(t / drop_every)``, ``t`` in epochs or iterations.
``triangular``, ``triangular2``, ``exp_range``
    Cyclical learning rates (Smith, "Cyclical Learning Rates for Training Neural
    Networks", 2015/2017, eq. 1 and Section 3.1)::

        cycle = floor(1 + iterations / (2 * step_size))
        x     = abs(iterations / step_size - 2 * cycle + 1)
        lr    = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale

    with ``scale = 1`` (triangular), ``1 / 2 ** (cycle - 1)`` (triangular2) or
    ``gamma ** iterations`` (exp_range). ``base_lr`` is ``train.learning_rate``,
    ``max_lr`` is ``schedule.max_lr`` (default 4 x ``base_lr``); ``step_size``
    (half a cycle) is given in epochs or iterations (``step_unit``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CYCLICAL", "SCHEDULES", "cosine_lr", "cyclical_lr", "lr_at", "step_decay_lr"]

#: Every schedule name accepted by ``train.schedule.kind``.
SCHEDULES = ("constant", "cosine", "step", "triangular", "triangular2", "exp_range")
#: The cyclical ones.
CYCLICAL = ("triangular", "triangular2", "exp_range")
#: ``max_lr`` of a cyclical schedule when the config leaves it unset, as a multiple of the base.
DEFAULT_MAX_FACTOR = 4.0


def cyclical_lr(
    iteration: float,
    base_lr: float,
    max_lr: float,
    step_size: float,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> float:
    """Smith's cyclical learning rate at `iteration` (0-based).

    Parameters
    ----------
    iteration
        Training iterations done so far.
    base_lr, max_lr
        Lower and upper bound of the cycle.
    step_size
        Iterations in half a cycle.
    mode
        ``triangular``, ``triangular2`` or ``exp_range``.
    gamma
        Per-iteration decay of the amplitude in ``exp_range``.

    Returns
    -------
    float
        The learning rate.
    """
    if step_size <= 0:
        raise ValueError("step_size must be positive")
    cycle = math.floor(1 + iteration / (2 * step_size))
    x = abs(iteration / step_size - 2 * cycle + 1)
    if mode == "triangular":
        scale = 1.0
    elif mode == "triangular2":
        scale = 1.0 / (2.0 ** (cycle - 1))
    elif mode == "exp_range":
        scale = gamma**iteration
    else:
        raise ValueError(f"unknown cyclical mode {mode!r}; choose from {CYCLICAL}")
    return base_lr + (max_lr - base_lr) * max(0.0, 1.0 - x) * scale


def cosine_lr(base_lr: float, progress: float, min_fraction: float = 0.02) -> float:
    """Cosine decay from `base_lr` (progress 0) to ``min_fraction * base_lr`` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return base_lr * (
        min_fraction + (1.0 - min_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
    )


def step_decay_lr(base_lr: float, t: float, drop: float, drop_every: float) -> float:
    """``base_lr * drop ** floor(t / drop_every)``."""
    return base_lr * drop ** math.floor(t / drop_every)


def lr_at(
    step: int,
    steps_per_epoch: int,
    total_steps: int,
    config: Any,
    progress: float | None = None,
) -> float:
    """Learning rate for the batch after `step` finished batches.

    Parameters
    ----------
    step
        Batches trained so far (0 for the first batch).
    steps_per_epoch
        Batches per epoch (converts epoch units to iterations).
    total_steps
        Planned batches of the run.
    config
        A ``TrainConfig`` (or a whole ``Config``): ``learning_rate`` and ``schedule``.
    progress
        Fraction of the run done in ``[0, 1]``; default ``step / total_steps``.
        Training passes the larger of that and the fraction of the time budget used.

    Returns
    -------
    float
        The learning rate.
    """
    cfg = getattr(config, "train", config)
    schedule = cfg.schedule
    base = float(cfg.learning_rate)
    if progress is None:
        progress = step / total_steps if total_steps else 0.0
    per_unit = steps_per_epoch if schedule.step_unit == "epochs" else 1
    kind = schedule.kind
    if kind == "constant":
        return base
    if kind == "cosine":
        return cosine_lr(base, progress, schedule.min_fraction)
    if kind == "step":
        return step_decay_lr(base, step / per_unit, schedule.drop, schedule.drop_every)
    if kind in CYCLICAL:
        peak = schedule.max_lr if schedule.max_lr is not None else DEFAULT_MAX_FACTOR * base
        return cyclical_lr(step, base, peak, schedule.step_size * per_unit, kind, schedule.gamma)
    raise ValueError(f"unknown schedule {kind!r}; choose from {SCHEDULES}")
