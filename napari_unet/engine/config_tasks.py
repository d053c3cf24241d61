"""What the network is trained to do (``model.task``) and the settings that depend on it.

Three tasks share one code path (see docs/features.md, "Tasks"):

``binary``
    Sigmoid segmentation of one foreground class (the default, and every config written
    before tasks existed). Losses ``bce``, ``dice``, ``bce_dice``.
``multiclass``
    Softmax over the classes named by ``model.classes`` (index 0 first, e.g.
    ``[background, membrane, mitochondria]``); masks are class-index stacks. Losses
    ``ce`` (weighted categorical cross-entropy), ``dice`` (mean soft Dice over the
    classes), ``ce_dice``.
``regression``
    A linear output predicting a float image (e.g. a fluorescence channel from
    phase contrast, as in microDL). Losses ``l1``, ``l2``, ``ssim``, ``l1_ssim``.

This module holds the plain-Python rules (no pydantic models, no engine imports) that the
root :class:`~napari_unet.engine.config.Config` applies: each task's losses and default
loss, the checks that refuse binary-only settings for the other tasks, and the parser of
slice-index lists used by ``data.split``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BINARY_ONLY_MONITORS",
    "TASKS",
    "TASK_LOSSES",
    "SplitConfig",
    "check_task_settings",
    "default_loss",
    "parse_index_spec",
    "with_task_default_loss",
]

#: The tasks ``model.task`` can name.
TASKS = ("binary", "multiclass", "regression")
#: The losses of each task; the first is the default.
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "binary": ("bce_dice", "bce", "dice"),
    "multiclass": ("ce_dice", "ce", "dice"),
    "regression": ("l1", "l2", "ssim", "l1_ssim"),
}
#: Checkpoint monitors that only a binary segmentation computes.
BINARY_ONLY_MONITORS = ("val_rand_fscore",)

_SPEC_RE = re.compile(r"^\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*$")


def default_loss(task: str) -> str:
    """The loss a task trains with when ``train.loss`` is not given."""
    return TASK_LOSSES.get(task, TASK_LOSSES["binary"])[0]


def _get(node: Any, key: str) -> Any:
    """``node[key]`` for a dict, ``node.key`` for a pydantic model, else None."""
    if isinstance(node, dict):
        return node.get(key)
    return getattr(node, key, None)


def with_task_default_loss(data: Any) -> Any:
    """Raw config data with ``train.loss`` set to the task's default when it is not given.

    Parameters
    ----------
    data
        The mapping being validated as a ``Config`` (other values pass unchanged).

    Returns
    -------
    Any
        `data`, or a copy whose ``train`` section names the task's default loss.
    """
    if not isinstance(data, dict):
        return data
    task = _get(data.get("model") or {}, "task") or "binary"
    if not isinstance(task, str) or task not in TASK_LOSSES or task == "binary":
        return data  # a wrong task is pydantic's to report, in one line
    train = data.get("train")
    if train is None:
        return {**data, "train": {"loss": default_loss(task)}}
    if isinstance(train, dict) and "loss" not in train:
        return {**data, "train": {**train, "loss": default_loss(task)}}
    return data


def check_task_settings(config: Any) -> None:
    """Refuse settings that do not fit ``model.task``.

    Parameters
    ----------
    config
        A validated :class:`~napari_unet.engine.config.Config`.

    Raises
    ------
    ValueError
        With one sentence naming the setting and what fits instead: a loss of
        another task, ``data.mask_kind``, border weights or a Rand-score monitor
        for a task other than binary, a regression target normalization on a
        segmentation.
    """
    task = config.model.task
    losses = TASK_LOSSES[task]
    if config.train.loss not in losses:
        raise ValueError(
            f"train.loss {config.train.loss} does not fit model.task {task}; "
            f"choose one of {', '.join(losses)}"
        )
    if task == "binary":
        return
    if config.data.mask_kind != "auto":
        raise ValueError(
            f"data.mask_kind applies to binary masks; model.task {task} reads "
            + ("class-index masks" if task == "multiclass" else "float targets")
            + " (leave data.mask_kind at auto)"
        )
    if config.train.border_weights.enabled:
        raise ValueError(
            f"train.border_weights are computed from binary masks; turn them off for "
            f"model.task {task}"
        )
    if config.train.monitor in BINARY_ONLY_MONITORS:
        raise ValueError(
            f"train.monitor {config.train.monitor} is a binary-segmentation score; use "
            f"val_loss or last for model.task {task}"
        )


def parse_index_spec(spec: Any) -> list[int]:
    """Slice indices from ``"0-23"``, ``"0-5, 8, 10-12"`` or a list of ints.

    Ranges are inclusive at both ends (``"24-26"`` is 24, 25 and 26).

    Parameters
    ----------
    spec
        A string of comma-separated indices and ``a-b`` ranges, or a list of ints.

    Returns
    -------
    list of int
        The indices, in the order given, without repeats.

    Raises
    ------
    ValueError
        For a malformed string, a negative index or a range running backwards.
    """
    if isinstance(spec, str):
        if not _SPEC_RE.match(spec):
            raise ValueError(
                f"slice indices {spec!r} must be like '0-23' or '0-5, 8, 10-12' "
                "(inclusive ranges and single indices)"
            )
        values: list[int] = []
        for part in spec.split(","):
            ends = [int(p) for p in part.split("-")]
            if len(ends) == 2 and ends[1] < ends[0]:
                raise ValueError(f"slice range {part.strip()!r} runs backwards")
            values.extend(range(ends[0], ends[-1] + 1))
    else:
        values = [int(v) for v in spec]
        if any(v < 0 for v in values):
            raise ValueError(f"slice indices must be >= 0, got {values}")
    return list(dict.fromkeys(values))


class SplitConfig(BaseModel):
    """Which slices of the training stack train, validate and test (by index).

    Each part is a string of inclusive ranges and indices (``"0-23"``, ``"0-5, 8"``) or a
    list of ints; the parts must not overlap. Slices named by no part are not used. The
    test slices are never trained on: they are scored with the best checkpoint after
    training (``metadata.json`` under ``test``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    train: str | list[int] = Field(..., description="Training slices, e.g. '0-23'.")
    val: str | list[int] | None = Field(None, description="Validation slices, e.g. '24-26'.")
    test: str | list[int] | None = Field(None, description="Test slices, e.g. '27-29'.")

    @model_validator(mode="after")
    def _disjoint(self) -> SplitConfig:
        """Require well-formed, non-empty training indices and disjoint parts."""
        seen: dict[int, str] = {}
        for name in ("train", "val", "test"):
            for index in self.indices(name):
                if index in seen:
                    raise ValueError(f"slice {index} is in both split.{seen[index]} and {name}")
                seen[index] = name
        if not self.indices("train"):
            raise ValueError("split.train names no slice")
        return self

    def indices(self, part: str) -> list[int]:
        """The slice indices of `part` (``train``, ``val`` or ``test``); [] if not given."""
        spec = getattr(self, part)
        return [] if spec is None else parse_index_spec(spec)
