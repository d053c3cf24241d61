"""Which epoch's weights are kept: ``last.keras`` always, ``best.keras`` when the score improves.

The score is the validation Rand F-score (``train.monitor = val_rand_fscore``),
else minus the validation loss, else minus the training loss; with
``train.monitor = last`` every epoch counts as an improvement.
"""

from __future__ import annotations

from typing import Any

from ..model.model_folder import ModelFolder

__all__ = ["Checkpoints"]


class Checkpoints:
    """The checkpoints of one training and the best score so far.

    Parameters
    ----------
    folder
        The model folder the ``.keras`` files go to.
    monitor
        ``train.monitor``.
    monitor_rand
        True when the Rand F-score of the validation slices picks the best epoch.

    Attributes
    ----------
    best
        The best score so far (higher is better), None before the first epoch.
    epochs_without_gain
        Epochs since the score last improved (for early stopping).
    """

    def __init__(self, folder: ModelFolder, monitor: str, monitor_rand: bool) -> None:
        self.folder = folder
        self.monitor = monitor
        self.monitor_rand = monitor_rand
        self.best: float | None = None
        self.epochs_without_gain = 0

    def save_epoch(self, model: Any, record: dict[str, Any]) -> bool:
        """Write ``last.keras`` and, if the epoch's score improved, ``best.keras``.

        Parameters
        ----------
        model
            The Keras model.
        record
            The epoch's history record (``loss`` and ``val_*`` entries).

        Returns
        -------
        bool
            True if the epoch is the new best.
        """
        score = _score(record, self.monitor_rand)
        improved = self.best is None or score > self.best or self.monitor == "last"
        self.folder.save_weights_file(model, "last")
        if improved:
            self.best = score
            self.epochs_without_gain = 0
            self.folder.save_weights_file(model, "best")
        else:
            self.epochs_without_gain += 1
        return improved

    def ensure_best(self, model: Any, step: int, failed: bool) -> None:
        """Write ``best.keras`` at the end if no epoch wrote one but training ran.

        Parameters
        ----------
        model
            The Keras model.
        step
            Batches trained.
        failed
            True if a fault ended training (then nothing more is written).
        """
        if not self.folder.best_path.exists() and step > 0 and not failed:
            self.folder.save_weights_file(model, "best")

    def monitor_name(self, has_val: bool) -> str:
        """What picked the best checkpoint, as recorded in ``metadata.json``."""
        return _monitor_name(self.monitor, self.monitor_rand, has_val)


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
