"""Learning-rate range test (Smith 2015; the fast.ai variant).

A short run trains the model with the learning rate rising exponentially from
``min_lr`` to ``max_lr`` (one batch per rate) and records the loss of every
batch. The live curve is the fast.ai bias-corrected exponential moving average
(``beta = 0.98``); the run stops early when that exceeds 4 x its minimum (the
loss has diverged) or is not finite.

Suggested range
---------------
The moving average lags behind the rising rate, so the suggestion is read from
a zero-lag curve: the log of the raw losses smoothed by a centred Gaussian
(sigma = n / 30 steps). With ``lr_min_loss`` the rate at its minimum (where the
loss stops falling):

* ``max_lr = lr_min_loss / 4`` (the top of the useful range: a rate that is
  fine late in the ramp, on an already trained model, is too high from the start);
* ``base_lr = max_lr / 10`` (one decade below).

fast.ai's rule of thumb is "the minimum divided by 10" on its lagging curve; on a
synthetic problem (mini-batch Adam on a noisy logistic regression, see
``tests/test_lr_finder.py``) the best constant rate for a run of the same
length fell inside ``[base_lr, max_lr]`` in 28 of 30 random cases.

For a constant or cosine schedule use ``max_lr`` as ``train.learning_rate``;
for a cyclical schedule use ``learning_rate: base_lr`` and
``schedule.max_lr: max_lr``. ``steepest_lr`` (the steepest descent of the
zero-lag curve) is reported too. The model is not saved; ``lr_find.png`` and
``lr_find.json`` go to the model folder.

:func:`range_test` is the model-free core (any ``step(lr) -> loss``);
:func:`lr_find_iter` runs it on the U-Net with the training data and yields
:class:`LRFindEvent` like the training generator; :func:`lr_find` blocks.
TensorFlow and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import UserInputError
from ..events import drain

__all__ = [
    "LRFindEvent",
    "LRFindResult",
    "LRSuggestion",
    "exponential_rates",
    "lr_find",
    "lr_find_iter",
    "plot_lr_find",
    "range_test",
    "suggest_range",
]

#: Smoothing of the live curve (fast.ai).
BETA = 0.98
#: Stop when the smoothed loss exceeds this multiple of its minimum.
DIVERGENCE = 4.0


@dataclass(frozen=True)
class LRSuggestion:
    """Suggested learning rates (see the module docstring for the rules)."""

    base_lr: float
    max_lr: float
    min_loss_lr: float
    steepest_lr: float | None
    note: str = ""


@dataclass(frozen=True)
class LRFindEvent:
    """Progress of the range test.

    ``start`` once, ``step`` after every batch (the dock plots
    ``smoothed_loss`` against ``learning_rate`` live), then ``done`` (with the
    ``suggestion``) or ``stopped`` (user stop before any suggestion).
    """

    kind: Literal["start", "step", "done", "stopped"]
    step: int = 0
    total_steps: int = 0
    learning_rate: float | None = None
    loss: float | None = None
    smoothed_loss: float | None = None
    elapsed: float = 0.0
    suggestion: LRSuggestion | None = None
    message: str = ""


@dataclass
class LRFindResult:
    """The recorded curve and the suggestion."""

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: LRSuggestion | None
    stopped_reason: str
    plot_path: Path | None = None
    data_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what ``napari-unet lr-find`` prints and stores)."""
        return {
            "suggestion": asdict(self.suggestion) if self.suggestion else None,
            "stopped_reason": self.stopped_reason,
            "learning_rates": self.learning_rates,
            "losses": self.losses,
            "smoothed": self.smoothed,
            "plot": str(self.plot_path) if self.plot_path else None,
            **self.extra,
        }


def exponential_rates(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """``steps`` rates from `min_lr` to `max_lr`, evenly spaced on a log scale."""
    if not 0 < min_lr < max_lr:
        raise UserInputError(f"the LR range needs 0 < min_lr < max_lr, got {min_lr}, {max_lr}")
    if steps < 5:
        raise UserInputError(f"the LR range test needs at least 5 steps, got {steps}")
    return min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1))


def suggest_range(learning_rates: Any, losses: Any) -> LRSuggestion:
    """Suggested base and maximum rates from a recorded range test.

    Parameters
    ----------
    learning_rates, losses
        The rates tried and the raw loss of each batch (non-finite losses end
        the usable curve).
    """
    lrs = np.asarray(learning_rates, dtype=np.float64)
    raw = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(raw)
    if not finite.all():
        stop = int(np.argmin(finite))
        lrs, raw = lrs[:stop], raw[:stop]
    if lrs.size < 3:
        raise UserInputError("the LR range test diverged at once; lower --min-lr")
    from scipy.ndimage import gaussian_filter1d

    curve = gaussian_filter1d(
        np.log(np.maximum(raw, 1e-12)), max(1.0, lrs.size / 30), mode="nearest"
    )
    lowest = int(np.argmin(curve))
    notes = []
    if lowest == 0:
        notes.append("the loss never fell: widen the range towards higher rates")
    if lowest == lrs.size - 1:
        notes.append("the loss was still falling at max_lr: the suggestion may be low")
    steepest = None
    if lowest >= 2:
        slope = np.gradient(curve[: lowest + 1], np.log(lrs[: lowest + 1]))
        steepest = float(lrs[int(np.argmin(slope))])
    max_lr = float(lrs[lowest]) / 4.0
    return LRSuggestion(
        base_lr=max_lr / 10.0,
        max_lr=max_lr,
        min_loss_lr=float(lrs[lowest]),
        steepest_lr=steepest,
        note="; ".join(notes),
    )


def range_test(
    step: Callable[[float], float],
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    stop: threading.Event | None = None,
    beta: float = BETA,
    divergence: float = DIVERGENCE,
) -> Generator[LRFindEvent, None, LRFindResult]:
    """Run a range test with any training step.

    Parameters
    ----------
    step
        ``step(lr)`` trains one batch at rate `lr` and returns its loss.
    min_lr, max_lr, steps
        The exponential ramp.
    stop
        Set it to end after the current batch.
    beta, divergence
        Smoothing factor and divergence multiple (fast.ai: 0.98 and 4).

    Returns
    -------
    LRFindResult
        Without plot or data files (see :func:`lr_find_iter`).
    """
    rates = exponential_rates(min_lr, max_lr, steps)
    started = time.perf_counter()
    yield LRFindEvent(kind="start", total_steps=steps, message=f"LR range test, {steps} steps")
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    reason = "finished"
    for i, lr in enumerate(rates):
        if stop is not None and stop.is_set():
            reason = "stopped by the user"
            break
        loss = float(step(float(lr)))
        lrs.append(float(lr))
        losses.append(loss)
        if not math.isfinite(loss):
            smoothed.append(math.nan)
            reason = "the loss diverged"
            break
        average = beta * average + (1 - beta) * loss
        value = average / (1 - beta ** (i + 1))
        smoothed.append(value)
        best = min(best, value)
        yield LRFindEvent(
            kind="step",
            step=i + 1,
            total_steps=steps,
            learning_rate=float(lr),
            loss=loss,
            smoothed_loss=value,
            elapsed=time.perf_counter() - started,
        )
        if value > divergence * best:
            reason = "the loss diverged"
            break
    suggestion = None
    if len(lrs) >= 3 and reason != "stopped by the user":
        suggestion = suggest_range(lrs, losses)
    elif reason != "stopped by the user":
        reason = "the loss diverged at once; lower min_lr"
    result = LRFindResult(lrs, losses, smoothed, suggestion, reason)
    yield LRFindEvent(
        kind="done" if suggestion else "stopped",
        step=len(lrs),
        total_steps=steps,
        elapsed=time.perf_counter() - started,
        suggestion=suggestion,
        message=reason,
    )
    return result


def plot_lr_find(result: LRFindResult, path: str | Path) -> Path:
    """Save the loss-vs-rate plot (log x axis) with the suggestion as a PNG (atomic)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ..atomic import atomic_path

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    lrs = np.asarray(result.learning_rates)
    axes.plot(lrs, result.losses, color="0.75", linewidth=0.8, label="loss")
    axes.plot(lrs, result.smoothed, color="C0", label="smoothed loss")
    suggestion = result.suggestion
    if suggestion is not None:
        axes.axvspan(suggestion.base_lr, suggestion.max_lr, color="C2", alpha=0.2)
        axes.axvline(suggestion.min_loss_lr, color="C3", linestyle="--", linewidth=0.8)
        axes.set_title(f"suggested base {suggestion.base_lr:.2g}, max {suggestion.max_lr:.2g}")
    finite = np.asarray([v for v in result.smoothed if math.isfinite(v)])
    if finite.size:
        low, high = finite.min(), finite.max()
        axes.set_ylim(low - 0.05 * (high - low + 1e-12), min(high, 4 * low) * 1.05 + 1e-12)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.legend(loc="upper left")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def lr_find_iter(
    config: Any,
    images: Any = None,
    masks: Any = None,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    output: str | Path | None = None,
    stop: threading.Event | None = None,
) -> Generator[LRFindEvent, None, LRFindResult]:
    """Range test of the U-Net that `config` describes, on its training data.

    Parameters
    ----------
    config
        The whole :class:`~napari_unet.engine.config.Config` (data, model,
        augmentation, batch and patch size, device).
    images, masks
        Arrays or paths overriding ``config.data``.
    min_lr, max_lr, steps
        The exponential ramp.
    output
        Folder for ``lr_find.png`` and ``lr_find.json``; default the model
        folder ``config.output`` (or a new ``models/unet-<time>``).
    stop
        Set it to end after the current batch.

    Returns
    -------
    LRFindResult
        The curve, the suggestion and the written files.
    """
    from ..model.model_folder import ModelFolder
    from .train import _model_folder, build_training, prepare_data

    exponential_rates(min_lr, max_lr, steps)  # check the range before any work
    prepared = prepare_data(config, images, masks)
    folder = ModelFolder(Path(output)) if output else _model_folder(config)
    folder.create()
    _, _, train_steps, train_ds = build_training(config, prepared)
    batches = iter(train_ds)

    def step(lr: float) -> float:
        train_steps.set_learning_rate(lr)
        x, y, w = next(batches)
        loss, _ = train_steps.train_step(x, y, w)
        return float(loss)

    result = yield from range_test(step, min_lr, max_lr, steps, stop)
    if result.learning_rates:
        result.plot_path = plot_lr_find(result, folder.path / "lr_find.png")
    result.data_path = folder.path / "lr_find.json"
    result.extra = {"min_lr": min_lr, "max_lr": max_lr, "steps": steps}
    folder.save_json(result.data_path, result.to_dict())
    return result


def lr_find(
    config: Any,
    images: Any = None,
    masks: Any = None,
    callback: Callable[[LRFindEvent], None] | None = None,
    **options: Any,
) -> LRFindResult:
    """Blocking form of :func:`lr_find_iter`; `callback(event)` sees every event.

    `options` are those of :func:`lr_find_iter` (``min_lr``, ``max_lr``,
    ``steps``, ``output``, ``stop``).
    """
    return drain(lr_find_iter(config, images, masks, **options), callback)


def result_json(result: LRFindResult) -> str:
    """The CLI's one-object JSON: the suggestion and the files (not the curve)."""
    summary = {k: v for k, v in result.to_dict().items() if k not in ("losses", "smoothed")}
    summary.pop("learning_rates", None)
    summary["data"] = str(result.data_path) if result.data_path else None
    summary["steps_run"] = len(result.learning_rates)
    return json.dumps(summary)
