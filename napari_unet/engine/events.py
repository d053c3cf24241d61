"""Progress events yielded by the long-running engine generators.

Events are small frozen dataclasses of plain Python values so they can cross
threads (napari ``thread_worker``), be printed by the CLI or be logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["PredictEvent", "TrainEvent", "drain"]

TrainEventKind = Literal["start", "step", "epoch", "done", "stopped"]


@dataclass(frozen=True)
class TrainEvent:
    """One step of training progress.

    Attributes
    ----------
    kind
        ``start`` once, ``step`` every few batches, ``epoch`` after each
        validation, then ``done`` (finished or budget reached) or ``stopped``
        (user stop, early stopping or a fault; `message` says which).
    epoch
        1-based epoch number (0 before the first epoch).
    total_epochs
        Planned epochs.
    step
        Global batch counter (1-based after the first batch).
    total_steps
        Planned batches overall.
    loss
        Running mean training loss of the current epoch.
    metrics
        Running training metrics of the current epoch (e.g. ``dice``).
    val
        Validation results of the epoch (``loss``, ``dice``, ``iou``,
        ``pixel_error``...) on ``epoch`` events; empty otherwise.
    learning_rate
        Learning rate used at this step.
    elapsed
        Seconds since training started.
    eta
        Estimated seconds remaining, or None before it can be estimated.
    model_dir
        Model folder being written.
    message
        Human-readable note (why training stopped, where checkpoints are).
    """

    kind: TrainEventKind
    epoch: int = 0
    total_epochs: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    learning_rate: float | None = None
    elapsed: float = 0.0
    eta: float | None = None
    model_dir: str | None = None
    message: str = ""


@dataclass(frozen=True)
class PredictEvent:
    """Progress of tiled prediction: `done` of `total` tiles processed."""

    done: int
    total: int
    elapsed: float = 0.0
    eta: float | None = None
    message: str = ""


def drain(generator: Iterator[Any], callback: Callable[[Any], None] | None = None) -> Any:
    """Run an engine generator to its end and return its return value.

    This is the blocking form of every long-running engine generator;
    `callback(event)` sees each yielded event (the CLI prints progress there).
    """
    while True:
        try:
            event = next(generator)
        except StopIteration as finished:
            return finished.value
        if callback is not None:
            callback(event)
