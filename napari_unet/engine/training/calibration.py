"""Choosing the mask threshold of a model on pixels it did not train on.

A U-Net's probabilities move when it is fine-tuned (on a new volume the best
threshold moved from 0.3-0.5 to about 0.85 in one trial), so the threshold that
turns them into a mask is chosen again after every training and stored in the
model folder's ``config.yaml`` (``predict.threshold``), where ``napari-unet
predict`` and the dock take it by default.

- after a first training: on the validation slices, with the best checkpoint;
- after fine-tuning: on the held-back bands of the corrected slices (see
  :func:`holdout_bands`), which the fine-tuning never trained on.

Two rules (:func:`choose_threshold`), by how much the region shows of the cells:

- ``"rand"`` (whole validation slices): the threshold with the highest Rand F-score;
  among thresholds within :data:`RAND_TOLERANCE` of it (a difference smaller than one
  merge on a few hundred pixels), the one with the lowest pixel error.
- ``"pixel_error"`` (held-back bands): among the thresholds whose pixel error is within
  :data:`PIXEL_ERROR_TOLERANCE` of the lowest, the one with the highest Rand F-score.
  A band a fifth of a slice wide holds few whole cells, so its Rand F-score jumps by
  0.03-0.05 between neighbouring thresholds (measured on the shifted ISBI volume of
  ``benchmarks/bench_correct_loop.py``: the Rand-first rule picked 0.2 and 0.9, the
  worst thresholds on the test slices); its pixel error is a smooth curve whose minimum
  lay within 0.05 of the test slices' best. The Rand F-score then decides among the
  thresholds that are equally good pixel-wise, and the middle of those it cannot tell
  apart is taken (the band's pixel-error minimum is flat over 0.1-0.15).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evaluation.metrics import evaluate

__all__ = [
    "PIXEL_ERROR_TOLERANCE",
    "RAND_TOLERANCE",
    "THRESHOLDS",
    "Calibration",
    "calibrate_on_validation",
    "choose_threshold",
    "holdout_bands",
]

#: Thresholds tried.
THRESHOLDS = tuple(round(0.2 + 0.05 * i, 2) for i in range(15))  # 0.2 ... 0.9
#: Rand F-scores closer than this to the best count as equal (pixel error decides).
RAND_TOLERANCE = 0.003
#: Pixel errors closer than this to the lowest count as equal (Rand F-score decides).
PIXEL_ERROR_TOLERANCE = 0.002
#: Fewer labelled pixels than this in the calibration region: keep the old threshold.
MIN_PIXELS = 4096


@dataclass
class Calibration:
    """The chosen threshold and the scores behind it."""

    threshold: float
    region: str
    pixels: int
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    rule: str = ""

    def as_metadata(self) -> dict[str, Any]:
        """The record stored in ``metadata.json`` under ``calibration``."""
        return {
            "threshold": self.threshold,
            "region": self.region,
            "pixels": self.pixels,
            "rule": self.rule,
            "scores": self.scores,
        }


def holdout_bands(
    shape: tuple[int, int], count: int, fraction: float = 0.2, seed: int = 0
) -> list[tuple[slice, slice]]:
    """One vertical band per corrected slice, held back from fine-tuning for calibration.

    Parameters
    ----------
    shape
        (height, width) of the slices.
    count
        Number of corrected slices.
    fraction
        Share of each slice's width held back.
    seed
        Where the bands lie (seeded, so the CLI and the dock hold back the same pixels).

    Returns
    -------
    list of (slice, slice)
        ``(rows, columns)`` of each slice's band.
    """
    height, width = shape
    band = max(1, round(width * fraction))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, max(1, width - band + 1), size=count)
    return [(slice(0, height), slice(int(x0), int(x0) + band)) for x0 in starts]


def _score(probability: np.ndarray, truth: np.ndarray, labelled: np.ndarray, threshold: float):
    """Mean Rand F-score and pixel error (labelled pixels only) over the slices."""
    rand, errors = [], []
    for prob, true, keep in zip(probability, truth, labelled, strict=True):
        scores = evaluate(prob, true, threshold=threshold)
        if np.isfinite(scores["rand_fscore"]):
            rand.append(scores["rand_fscore"])
        if keep.any():
            errors.append(float(np.mean((prob > threshold)[keep] != true[keep].astype(bool))))
    return (float(np.mean(rand)) if rand else float("nan")), (
        float(np.mean(errors)) if errors else float("nan")
    )


def choose_threshold(
    probability: list[np.ndarray] | np.ndarray,
    truth: list[np.ndarray] | np.ndarray,
    labelled: list[np.ndarray] | np.ndarray | None = None,
    region: str = "validation slices",
    default: float = 0.5,
    thresholds: tuple[float, ...] = THRESHOLDS,
    rule: str = "rand",
) -> Calibration:
    """The threshold that segments these pixels best (see the module docstring).

    Parameters
    ----------
    probability
        Probability crops (one 2D array per crop or slice).
    truth
        Ground truth of the same crops, nonzero = foreground.
    labelled
        Which pixels are labelled (sparse truth); None = all.
    region
        What the crops are, for the record.
    default
        Kept when the crops hold fewer than :data:`MIN_PIXELS` labelled pixels or no
        foreground.
    thresholds
        Candidates.
    rule
        ``"rand"`` (Rand F-score first; for whole slices) or ``"pixel_error"`` (pixel
        error first, Rand F-score among the equal; for narrow held-back bands).

    Returns
    -------
    Calibration
        The threshold and every candidate's Rand F-score and pixel error.
    """
    probability = [np.asarray(p, dtype=np.float32) for p in probability]
    truth = [np.asarray(t) for t in truth]
    if labelled is None:
        labelled = [np.ones(t.shape, dtype=bool) for t in truth]
    labelled = [np.asarray(k, dtype=bool) for k in labelled]
    truth = [np.where(k, t, 0) for t, k in zip(truth, labelled, strict=True)]
    pixels = int(sum(int(k.sum()) for k in labelled))
    if pixels < MIN_PIXELS or not any(t.any() for t in truth):
        return Calibration(
            threshold=default, region=f"{region} (too few labelled pixels)", pixels=pixels
        )
    scores = {}
    for threshold in thresholds:
        rand, error = _score(probability, truth, labelled, threshold)
        scores[f"{threshold:.2f}"] = {"rand_fscore": rand, "pixel_error": error}
    finite = {k: v for k, v in scores.items() if np.isfinite(v["rand_fscore"])}
    if not finite:
        return Calibration(threshold=default, region=region, pixels=pixels, scores=scores)
    if rule == "pixel_error":
        lowest = min(v["pixel_error"] for v in finite.values())
        close = [k for k, v in finite.items() if v["pixel_error"] <= lowest + PIXEL_ERROR_TOLERANCE]
        best = max(finite[k]["rand_fscore"] for k in close)
        tied = sorted(
            (k for k in close if finite[k]["rand_fscore"] >= best - RAND_TOLERANCE), key=float
        )
        chosen = tied[len(tied) // 2]  # the middle of an equally good range
        described = (
            f"pixel error within {PIXEL_ERROR_TOLERANCE} of the lowest; of those, max Rand F "
            f"(within {RAND_TOLERANCE}: the middle one)"
        )
    elif rule == "rand":
        best = max(v["rand_fscore"] for v in finite.values())
        close = [k for k, v in finite.items() if v["rand_fscore"] >= best - RAND_TOLERANCE]
        chosen = min(close, key=lambda k: (finite[k]["pixel_error"], abs(float(k) - default)))
        described = f"max Rand F-score; within {RAND_TOLERANCE} of it, min pixel error"
    else:
        raise ValueError(f"unknown calibration rule {rule!r}")
    return Calibration(
        threshold=float(chosen), region=region, pixels=pixels, scores=scores, rule=described
    )


def calibrate_on_validation(run: Any, failed: bool, stop: threading.Event) -> dict[str, Any]:
    """After a first training: choose the best checkpoint's threshold on the validation
    slices and store it in the model folder's ``config.yaml``.

    Parameters
    ----------
    run
        The :class:`~napari_unet.engine.training.build.TrainingRun` (its validation data,
        config and folder).
    failed
        True if a fault ended training (nothing is calibrated then).
    stop
        A set stop request skips the calibration (the config keeps its threshold).

    Returns
    -------
    dict
        ``{"calibration": record}`` for ``metadata.json``, or empty when nothing was done.
    """
    prepared = run.prepared
    if failed or stop.is_set() or prepared.val_images is None:
        return {}
    if not run.folder.best_path.exists():
        return {}
    from ..events import drain
    from ..inference.predict import predict_normalized
    from ..model.model_folder import load_model

    loaded = load_model(run.folder.path)
    probability = drain(
        predict_normalized(
            loaded.keras_model, prepared.val_images, run.config.predict, run.config.model.multiple
        )
    )
    labelled = None if prepared.val_weights is None else prepared.val_weights > 0
    calibration = choose_threshold(
        probability,
        prepared.val_masks,
        labelled,
        region="validation slices",
        default=run.config.predict.threshold,
    )
    store_threshold(run.folder, calibration.threshold)
    return {"calibration": calibration.as_metadata()}


def store_threshold(folder: Any, threshold: float) -> None:
    """Write `threshold` as ``predict.threshold`` into the folder's ``config.yaml``."""
    config = folder.load_config()
    folder.save_config(config.with_overrides({"predict.threshold": float(threshold)}))
