"""Segmentation quality measures for EM stacks (numpy/scipy only, no TensorFlow).

Conventions
-----------
* Masks are uint8 ``{0, 1}``; 1 is the foreground. For ISBI 2012 the foreground
  is the cell interior (label 255 in the released labels) and 0 is membrane.
* Probability maps are float32 in ``[0, 1]``; a pixel is foreground when
  ``probability > threshold``.
* The object-level measures follow the ISBI 2012 challenge
  (Arganda-Carreras et al. 2015, *Front. Neuroanat.* 9:142): every slice is
  segmented on its own by labelling the 4-connected components of predicted
  interior and growing them into the predicted membrane
  (:func:`segment_interiors`); the ground truth segments are the 4-connected
  components of true interior (:func:`gt_segments`); both measures are then
  restricted to the pixels of true interior.

Pixel-level measures: :func:`pixel_error`, :func:`pixel_accuracy`, :func:`dice`,
:func:`iou`, :func:`pixel_difference_percent`.
Object-level measures: :func:`rand_fscore` (foreground-restricted Rand F-score,
Fiji's ``V_Rand``), :func:`rand_error`, :func:`variation_of_information`.
Whole stacks: :func:`evaluate`.

This module gathers the public names of the evaluation stage; they live in
:mod:`.pixel_metrics` (masks and pixel measures), :mod:`.segment_metrics`
(ISBI segments, Rand F-score, VI) and :mod:`.stack_evaluation` (:func:`evaluate`).
"""

from __future__ import annotations

from .pixel_metrics import (
    binarize_prediction,
    dice,
    iou,
    pixel_accuracy,
    pixel_difference_percent,
    pixel_error,
)
from .segment_metrics import (
    RandScore,
    VIScore,
    gt_segments,
    rand_error,
    rand_fscore,
    segment_interiors,
    variation_of_information,
)
from .stack_evaluation import evaluate

__all__ = [
    "RandScore",
    "VIScore",
    "binarize_prediction",
    "dice",
    "evaluate",
    "gt_segments",
    "iou",
    "pixel_accuracy",
    "pixel_difference_percent",
    "pixel_error",
    "rand_error",
    "rand_fscore",
    "segment_interiors",
    "variation_of_information",
]
