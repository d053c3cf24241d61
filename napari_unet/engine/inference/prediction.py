"""What prediction returns for every task, and how its input is laid out and normalized.

:class:`Prediction` holds the network's output (``probability``) with the task that
says how to read it: a binary mask by threshold, class labels by arg-max (each class
also as a mask of its own), or the float image of a regression.
:func:`normalized_input` prepares raw images exactly as training prepared them: channel
layout (``(Z, C, Y, X)`` in, ``(Z, Y, X, C)`` to the network), flat field, percentile
normalization of each channel, resizing.

Pure numpy; never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.preprocess import apply_normalization, as_stack, normalization_stats, resize_stack
from ..data.task_data import per_channel
from ..errors import UserInputError

__all__ = ["Prediction", "normalized_input", "resize_output"]


@dataclass
class Prediction:
    """Result of prediction.

    Attributes
    ----------
    probability
        The network's float32 output at the input's size: ``(Z, Y, X)`` probability of
        the mask's nonzero class (binary), ``(Z, Y, X, K)`` class probabilities
        (multiclass) or ``(Z, Y, X)`` predicted values (regression, in the units of the
        normalized training target).
    threshold
        Threshold used by :meth:`mask` by default (binary).
    task
        ``model.task`` of the model that predicted.
    classes
        Class names (multiclass), index 0 first.
    """

    probability: np.ndarray
    threshold: float = 0.5
    task: str = "binary"
    classes: tuple[str, ...] | None = None

    def mask(self, threshold: float | None = None) -> np.ndarray:
        """uint8 {0, 1} mask: probability above the threshold (binary only).

        Raises
        ------
        UserInputError
            For a multiclass or regression prediction (it has no threshold).
        """
        if self.task == "multiclass":
            raise UserInputError(
                "a multiclass prediction has class labels, not one mask: use labels() or "
                "class_mask(name)"
            )
        if self.task == "regression":
            raise UserInputError("a regression prediction is a float image, not a mask")
        value = self.threshold if threshold is None else threshold
        return (self.probability > value).astype(np.uint8)

    def labels(self) -> np.ndarray:
        """uint8 class indices ``(Z, Y, X)``: the arg-max class (binary: the mask)."""
        if self.task == "multiclass":
            return np.argmax(self.probability, axis=-1).astype(np.uint8)
        return self.mask()

    def class_index(self, name: str | int) -> int:
        """The index of a class given by name or index."""
        names = list(self.classes or ())
        if isinstance(name, (int, np.integer)) or str(name).isdigit():
            index = int(name)
            if 0 <= index < len(names):
                return index
        elif name in names:
            return names.index(name)
        raise UserInputError(f"no class {name!r}; the model's classes are {', '.join(names)}")

    def class_mask(self, name: str | int) -> np.ndarray:
        """uint8 {0, 1} mask of one class (by name or index) of a multiclass prediction."""
        if self.task != "multiclass":
            raise UserInputError("only a multiclass prediction has classes to export alone")
        return (self.labels() == self.class_index(name)).astype(np.uint8)

    def class_probability(self, name: str | int) -> np.ndarray:
        """float32 ``(Z, Y, X)`` probability of one class."""
        if self.task != "multiclass":
            raise UserInputError("only a multiclass prediction has class probabilities")
        return np.ascontiguousarray(self.probability[..., self.class_index(name)])


def normalized_input(
    images: Any, config: Any, stats: tuple[Any, Any] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Raw images as the network takes them, and their original ``(Y, X)``.

    Parameters
    ----------
    images
        ``(Z, Y, X)``/``(Y, X)`` (one channel) or ``(Z, C, Y, X)``/``(C, Y, X)`` for a
        network of ``model.in_channels = C``.
    config
        The model's config (``model.in_channels`` and the ``data`` section).
    stats
        Precomputed normalization ``(lo, hi)`` (single-channel input only).

    Returns
    -------
    normalized, original_hw
        float32 ``(Z, Y, X)`` or ``(Z, Y, X, C)``, resized if ``data.resize``.
    """
    data_cfg = config.data
    channels = config.model.in_channels or 1
    if channels > 1:
        from ..io.channels import channels_last, to_channel_stack

        arr = np.asarray(images)
        if arr.ndim == 3 and arr.shape[0] == channels:  # one (C, Y, X) image
            arr = arr[None]
        stack = channels_last(to_channel_stack(arr), channels)
        if data_cfg.flat_field or stats is not None:
            raise UserInputError(
                "flat-field correction and given normalization statistics need "
                "single-channel images"
            )
    else:
        stack = as_stack(np.asarray(images))
    original_hw = (int(stack.shape[1]), int(stack.shape[2]))
    low, high = data_cfg.percentiles
    if data_cfg.flat_field:  # estimated from the stack being predicted
        from ..data.flatfield import correct_flat_field

        stack = correct_flat_field(stack, None, data_cfg.flat_field_sigma)

    @per_channel
    def normalize(plane: np.ndarray) -> np.ndarray:
        if data_cfg.normalization == "none":
            out = np.asarray(plane, dtype=np.float32)
        else:
            lo_hi = stats or normalization_stats(
                plane, low, high, per_slice=data_cfg.normalization == "slice"
            )
            out = apply_normalization(plane, *lo_hi)
        if data_cfg.resize is not None:
            out = resize_stack(out, tuple(data_cfg.resize), order=1)
        return out

    return normalize(stack), original_hw


def resize_output(output: np.ndarray, config: Any, original_hw: tuple[int, int]) -> np.ndarray:
    """The network's output back at the input's size (after ``data.resize``)."""
    if config.data.resize is None:
        return output
    back = per_channel(lambda plane: resize_stack(plane, original_hw, order=1))
    return back(output).astype(np.float32)
