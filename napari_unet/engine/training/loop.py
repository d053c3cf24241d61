"""The epoch loop of a training: batches, validation, checkpoints and progress events.

:class:`TrainingLoop` runs the epochs of a
:class:`~napari_unet.engine.training.build.TrainingRun`. Each batch sets the
scheduled learning rate and runs one training step; a ``step`` event is
yielded every ``train.event_every_steps`` batches. After each epoch the model
is validated, ``last.keras`` (and, on improvement, ``best.keras``) and the
history are written, and an ``epoch`` event is yielded. The loop ends after
the planned epochs, on a stop request (within one batch), when a time budget
is spent, on early stopping, or on a fault (see
:mod:`~napari_unet.engine.training.faults`). While a ``pause`` event is set the
loop waits between batches; the budgets, progress and ETA do not count the wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..errors import TrainingStopped
from ..events import TrainEvent
from .build import TrainingRun
from .checkpoints import Checkpoints
from .faults import fault_reason
from .schedules import lr_at
from .steps import _rand_on_slices, _validate
from .task_metrics import count_size, summarize_counts

__all__ = ["TrainingLoop"]

#: `TrainingLoop.stopped_reason` while nothing has ended training early.
FINISHED = "finished"
#: `TrainingLoop.stopped_reason` after a stop request.
STOPPED_BY_USER = "stopped by the user"
#: `TrainingLoop.stopped_reason` when ``train.max_minutes`` or ``train.max_cpu_minutes`` ran out.
BUDGET_REACHED = "time budget reached"
#: Seconds between looks at the pause event while paused (a stop ends the wait at once).
PAUSE_POLL_SECONDS = 0.05


class _Budget:
    """The wall-clock and CPU-time budgets of the loop (``train.max_minutes``,
    ``train.max_cpu_minutes``); CPU time counts from construction, wall-clock
    time from :meth:`start`."""

    def __init__(self, train_cfg: TrainConfig) -> None:
        self.seconds = train_cfg.max_minutes * 60 if train_cfg.max_minutes else None
        self.cpu_seconds = train_cfg.max_cpu_minutes * 60 if train_cfg.max_cpu_minutes else None
        self.cpu_start = time.process_time()
        self.loop_start = time.perf_counter()
        #: Wall-clock and CPU seconds spent paused (not counted by the budgets).
        self.paused = 0.0
        self.cpu_paused = 0.0
        #: ``time.perf_counter()`` by which the loop must end whatever the budgets say
        #: (fine-tuning counts its budget from the command's start, set-up included).
        self.deadline: float | None = None

    def start(self) -> None:
        """Start the wall clock (when the first batch is about to run)."""
        self.loop_start = time.perf_counter()
        if self.deadline is not None:
            left = max(1.0, self.deadline - self.loop_start)
            self.seconds = min(self.seconds, left) if self.seconds else left

    def elapsed(self) -> float:
        """Wall-clock seconds since :meth:`start`, paused time excluded."""
        return time.perf_counter() - self.loop_start - self.paused

    def cpu_elapsed(self) -> float:
        """CPU seconds since construction, those spent while paused excluded."""
        return time.process_time() - self.cpu_start - self.cpu_paused

    def exclude(self, wall: float, cpu: float) -> None:
        """Leave a pause of `wall` wall-clock and `cpu` CPU seconds out of the budgets."""
        self.paused += max(wall, 0.0)
        self.cpu_paused += max(cpu, 0.0)

    def progress(self, step: int, total_steps: int) -> float:
        """Fraction of training done: of the steps or of a budget, whichever is further."""
        elapsed = self.elapsed()
        progress = step / total_steps
        if self.seconds:
            progress = max(progress, elapsed / self.seconds)
        if self.cpu_seconds:
            progress = max(progress, self.cpu_elapsed() / self.cpu_seconds)
        return progress

    def spent(self) -> bool:
        """True once either budget has run out."""
        return bool(
            (self.seconds and self.elapsed() >= self.seconds)
            or (self.cpu_seconds and self.cpu_elapsed() >= self.cpu_seconds)
        )

    def eta(self, step: int, total_steps: int) -> float | None:
        """Estimated seconds remaining after `step` of `total_steps` batches."""
        return _eta(self.elapsed(), step, total_steps, self.seconds)


@dataclass
class _EpochTally:
    """Running sums of the current epoch."""

    #: Sum of the batch losses.
    loss: float = 0.0
    #: Summed count vectors of the batches (``(tp, fp, fn, tn)`` for binary; see
    #: :mod:`~napari_unet.engine.training.task_metrics`).
    counts: np.ndarray = field(default_factory=lambda: np.zeros(4))
    #: 1-based number of the current batch within the epoch.
    batch: int = 0


class TrainingLoop:
    """The epochs of one training, as a generator of progress events.

    Parameters
    ----------
    run
        The built model, steps, data streams and folder.
    started
        ``time.perf_counter()`` when training started (event ``elapsed`` counts from it).

    Attributes
    ----------
    history
        One record per finished epoch (losses, metrics, learning rate, time).
    step
        Batches trained so far.
    stopped_reason
        ``finished``, or why training ended early.
    failed
        True if a fault ended training.
    checkpoints
        The checkpoints and the best score so far.
    """

    def __init__(self, run: TrainingRun, started: float) -> None:
        self.run = run
        self.started = started
        #: ``time.perf_counter()`` when the last batch ended (what follows it is timed).
        self.last_batch_end = started
        self.train_cfg = run.config.train
        self.total_steps = self.train_cfg.epochs * self.train_cfg.steps_per_epoch
        self.budget = _Budget(self.train_cfg)
        monitor_rand = run.val_ds is not None and self.train_cfg.monitor == "val_rand_fscore"
        self.checkpoints = Checkpoints(run.folder, self.train_cfg.monitor, monitor_rand)
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.learning_rate = self.train_cfg.learning_rate
        self.stopped_reason = FINISHED
        self.failed = False
        #: While set, the loop waits between batches (see :meth:`run_epochs`).
        self.pause: threading.Event | None = None

    def start_event(self) -> TrainEvent:
        """The ``start`` event: precision, number of slices and model folder."""
        run = self.run
        return TrainEvent(
            kind="start",
            total_epochs=self.train_cfg.epochs,
            total_steps=self.total_steps,
            elapsed=time.perf_counter() - self.started,
            model_dir=str(run.folder.path),
            message=f"training {run.precision} on {run.prepared.train_images.shape[0]} slices; "
            f"model folder {run.folder.path}",
        )

    def run_epochs(
        self, stop: threading.Event, pause: threading.Event | None = None
    ) -> Generator[TrainEvent, None, None]:
        """Train epoch after epoch, yielding ``step`` and ``epoch`` events.

        A fault inside the loop does not propagate: it sets :attr:`failed` and
        :attr:`stopped_reason`. The TensorBoard writer is closed at the end.

        Parameters
        ----------
        stop
            Set it to end after the current batch (also while paused).
        pause
            While set, wait before the next batch; the wait counts neither
            towards the time budgets nor towards progress and ETA.
        """
        if pause is not None:
            self.pause = pause
        self.budget.start()
        iterator = iter(self.run.train_ds)
        try:
            for epoch in range(1, self.train_cfg.epochs + 1):
                tally = yield from self._train_epoch(epoch, iterator, stop)
                if self.stopped_reason == STOPPED_BY_USER and tally.batch == 1:
                    break  # stopped before the epoch's first batch: no epoch record
                yield self._end_epoch(epoch, tally)
                if self._should_end():
                    break
        except Exception as exc:
            self.stopped_reason, self.failed = fault_reason(exc, self.step, self.run.folder), True
        finally:
            if self.run.writer is not None:
                self.run.writer.close()

    def _train_epoch(
        self, epoch: int, iterator: Iterator[Any], stop: threading.Event
    ) -> Generator[TrainEvent, None, _EpochTally]:
        """The batches of one epoch, until its end, a stop request or a spent budget."""
        tally = _EpochTally(counts=np.zeros(count_size(self.run.config)))
        steps_per_epoch = self.train_cfg.steps_per_epoch
        for batch in range(1, steps_per_epoch + 1):
            tally.batch = batch
            self._wait_while_paused(stop)
            if stop.is_set():
                self.stopped_reason = STOPPED_BY_USER
                break
            self._train_batch(iterator, tally)
            if self.step % self.train_cfg.event_every_steps == 0 or batch == steps_per_epoch:
                yield self._step_event(epoch, tally)
            if self.budget.spent():
                self.stopped_reason = BUDGET_REACHED
                break
        return tally

    def _wait_while_paused(self, stop: threading.Event) -> None:
        """Block while :attr:`pause` is set and `stop` is not; the budgets skip the wait."""
        pause = self.pause
        if pause is None or not pause.is_set() or stop.is_set():
            return
        wall, cpu = time.perf_counter(), time.process_time()
        while pause.is_set() and not stop.is_set():
            stop.wait(PAUSE_POLL_SECONDS)
        self.budget.exclude(time.perf_counter() - wall, time.process_time() - cpu)

    def _train_batch(self, iterator: Iterator[Any], tally: _EpochTally) -> None:
        """One training step at the scheduled learning rate; adds it to `tally`.

        Raises
        ------
        TrainingStopped
            If the loss is not finite.
        """
        cfg = self.train_cfg
        progress = self.budget.progress(self.step, self.total_steps)
        lr = lr_at(self.step, cfg.steps_per_epoch, self.total_steps, cfg, progress)
        self.learning_rate = lr
        self.run.steps.set_learning_rate(lr)
        x, y, w = next(iterator)
        loss, confusion = self.run.steps.train_step(x, y, w)
        loss = float(loss)
        if not math.isfinite(loss):
            raise TrainingStopped(
                f"the loss became {loss} at step {self.step + 1}; try a lower learning rate"
            )
        self.step += 1
        self.last_batch_end = time.perf_counter()
        tally.loss += loss
        tally.counts += confusion.numpy()
        if self.run.writer is not None:
            from .tb_logging import log_step

            log_step(self.run.writer, self.step, loss, lr, self.run.model, self.run.preview, cfg)

    def _step_event(self, epoch: int, tally: _EpochTally) -> TrainEvent:
        """The ``step`` event: running loss and metrics of the epoch so far."""
        eta = self.budget.eta(self.step, self.total_steps)
        return TrainEvent(
            kind="step",
            epoch=epoch,
            total_epochs=self.train_cfg.epochs,
            step=self.step,
            total_steps=self.total_steps,
            loss=tally.loss / tally.batch,
            metrics=summarize_counts(tally.counts, self.run.config),
            learning_rate=self.learning_rate,
            elapsed=time.perf_counter() - self.started,
            eta=eta,
            model_dir=str(self.run.folder.path),
        )

    def _end_epoch(self, epoch: int, tally: _EpochTally) -> TrainEvent:
        """Validate, record the epoch, write the checkpoints and the history.

        Returns
        -------
        TrainEvent
            The ``epoch`` event.
        """
        run = self.run
        batches = tally.batch if self.stopped_reason == FINISHED else max(tally.batch - 1, 1)
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": self.step,
            "loss": tally.loss / batches,
            **{f"train_{k}": v for k, v in summarize_counts(tally.counts, self.run.config).items()},
            "learning_rate": self.learning_rate,
            "elapsed": time.perf_counter() - self.started,
        }
        val = self._validate()
        record.update({f"val_{k}": v for k, v in val.items()})
        self.history.append(record)
        improved = self.checkpoints.save_epoch(run.model, record)
        run.folder.save_json(run.folder.history_path, self.history)
        if run.writer is not None:
            _write_scalars(run.writer, record, self.step)
        eta = self.budget.eta(self.step, self.total_steps)
        return TrainEvent(
            kind="epoch",
            epoch=epoch,
            total_epochs=self.train_cfg.epochs,
            step=self.step,
            total_steps=self.total_steps,
            loss=record["loss"],
            metrics=summarize_counts(tally.counts, self.run.config),
            val=val,
            learning_rate=self.learning_rate,
            elapsed=time.perf_counter() - self.started,
            eta=eta,
            model_dir=str(run.folder.path),
            message="new best checkpoint" if improved else "",
        )

    def _validate(self) -> dict[str, float]:
        """Validation loss and metrics (and EM metrics if asked); empty without validation."""
        run = self.run
        if run.val_ds is None:
            return {}
        val = _validate(run.steps, run.val_ds)
        if self.train_cfg.val_em_metrics:
            val.update(_rand_on_slices(run.model, run.prepared, run.config))
        return val

    def _should_end(self) -> bool:
        """True after an early end of the epoch or when early stopping's patience ran out."""
        if self.stopped_reason != FINISHED:
            return True
        patience = self.train_cfg.early_stopping_patience
        waited = self.checkpoints.epochs_without_gain
        if patience and waited >= patience:
            self.stopped_reason = f"early stopping: no improvement in {waited} epochs"
            return True
        return False


def _eta(elapsed: float, step: int, total_steps: int, budget: float | None) -> float | None:
    """Seconds remaining at the pace so far, capped by what is left of the budget."""
    if step == 0:
        return None
    by_steps = elapsed / step * (total_steps - step)
    return min(by_steps, max(budget - elapsed, 0.0)) if budget else by_steps


def _write_scalars(writer: Any, record: dict[str, Any], step: int) -> None:
    """Write the epoch record's losses and metrics to TensorBoard."""
    import tensorflow as tf

    with writer.as_default(step=step):
        for key, value in record.items():
            if key in ("epoch", "step", "elapsed"):
                continue
            tf.summary.scalar(key, float(value))
    writer.flush()
