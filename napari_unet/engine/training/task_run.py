"""What a training does differently per task: the input channels it records, the
threshold calibration (binary only) and the scoring of the test slices.

* :func:`with_data_channels`: ``model.in_channels`` resolved from the prepared data, so
  the model folder's ``config.yaml`` says how many channels the network takes;
* :func:`calibrate_for_task`: the threshold calibration of a binary segmentation
  (:func:`~napari_unet.engine.training.calibration.calibrate_on_validation`); the other
  tasks have no threshold;
* :func:`score_test_slices`: the slices of ``data.split.test`` predicted with the best
  checkpoint and scored (:func:`~napari_unet.engine.evaluation.task_scores.score_task`);
  the scores go to ``metadata.json`` under ``test`` and to the CLI's output.
"""

from __future__ import annotations

import threading
from typing import Any

from ..config import Config
from ..data.prepared_data import PreparedData

__all__ = ["calibrate_for_task", "score_test_slices", "with_data_channels"]


def with_data_channels(config: Config, prepared: PreparedData) -> Config:
    """`config` with ``model.in_channels`` set to the channels of the prepared images.

    Parameters
    ----------
    config
        The run's config (``model.in_channels`` may be None: inferred).
    prepared
        The prepared data; ``(Z, Y, X)`` images have one channel, ``(Z, Y, X, C)`` C.
    """
    images = prepared.train_images
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) == 0 or shape[0] == 0:  # lazy or no data (stopped)
        return config if config.model.in_channels else _set_channels(config, 1)
    channels = int(shape[-1]) if len(shape) == 4 else 1
    if config.model.in_channels == channels:
        return config
    return _set_channels(config, channels)


def _set_channels(config: Config, channels: int) -> Config:
    model = config.model.model_copy(update={"in_channels": channels})
    return config.model_copy(update={"model": model})


def calibrate_for_task(run: Any, failed: bool, stop: threading.Event) -> dict[str, Any]:
    """The threshold calibration of a binary segmentation; nothing for the other tasks."""
    if run.config.model.task != "binary":
        return {}
    from .calibration import calibrate_on_validation

    return calibrate_on_validation(run, failed, stop)


def score_test_slices(run: Any, failed: bool, stop: threading.Event) -> dict[str, Any]:
    """Predict the test slices with the best checkpoint and score them.

    Parameters
    ----------
    run
        The :class:`~napari_unet.engine.training.build.TrainingRun`.
    failed
        True if a fault ended training (nothing is scored then).
    stop
        A set stop request skips the scoring.

    Returns
    -------
    dict
        ``{"test": {"slices": [...], metric: value, ...}}`` for ``metadata.json``, or
        empty without test slices.
    """
    prepared = run.prepared
    if failed or stop.is_set() or prepared.test_images is None:
        return {}
    if not run.folder.best_path.exists():
        return {}
    from ..evaluation.task_scores import score_task
    from ..events import drain
    from ..inference.predict import predict_normalized
    from ..model.model_folder import load_model

    loaded = load_model(run.folder.path)  # the best checkpoint and its calibrated threshold
    output = drain(
        predict_normalized(
            loaded.keras_model, prepared.test_images, loaded.config.predict, loaded.multiple
        )
    )
    labelled = None if prepared.test_weights is None else prepared.test_weights > 0
    scores = score_task(output, prepared.test_masks, loaded.config, labelled)
    indices = prepared.description.get("test_indices", [])
    return {"test": {"slices": indices, **scores}}
