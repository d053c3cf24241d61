"""Which slices to correct next (numpy only).

With ground truth, slices are ranked by their Rand F-score (worst first);
without it, by the model's uncertainty: the fraction of pixels whose
probability is near 0.5, plus the mean binary entropy. :func:`spread_order`
turns the uncertainty ranking into the order in which to correct slices: the
most uncertain first, but spread through the stack, because neighbouring EM
slices show nearly the same cells (measured in ``benchmarks/bench_correct_loop.py``:
the two most uncertain slices of the shifted ISBI volume were neighbours, 4 and
5, and fine-tuning on them lowered the Rand F-score of the other slices).
"""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError

__all__ = ["rank_by_metric", "rank_by_uncertainty", "slice_uncertainty", "spread_order"]


def slice_uncertainty(probability: np.ndarray, band: float = 0.25) -> np.ndarray:
    """Per-slice uncertainty of a (Z, Y, X) probability stack.

    The score is the mean binary entropy (in bits) of the probabilities; it
    is highest for a slice full of pixels near 0.5. `band` is kept for the
    fraction of pixels in ``|p - 0.5| < band`` that :func:`rank_by_uncertainty`
    reports alongside.
    """
    prob = np.asarray(probability, dtype=np.float32)
    if prob.ndim == 2:
        prob = prob[None]
    if prob.ndim != 3 or prob.size == 0:
        raise UserInputError(f"expected a (Z, Y, X) probability stack, got shape {prob.shape}")
    p = np.clip(np.nan_to_num(prob, nan=0.5), 1e-6, 1 - 1e-6)
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return entropy.reshape(prob.shape[0], -1).mean(axis=1)


def rank_by_uncertainty(probability: np.ndarray, band: float = 0.25) -> list[dict[str, float]]:
    """Slices sorted most uncertain first, with their entropy and near-0.5 fraction."""
    prob = np.asarray(probability, dtype=np.float32)
    if prob.ndim == 2:
        prob = prob[None]
    entropy = slice_uncertainty(prob, band)
    near = (np.abs(prob - 0.5) < band).reshape(prob.shape[0], -1).mean(axis=1)
    order = np.argsort(-entropy, kind="stable")
    return [
        {"slice": int(z), "entropy": float(entropy[z]), "uncertain_fraction": float(near[z])}
        for z in order
    ]


def spread_order(ranking: list[dict[str, float]], min_gap: int | None = None) -> list[int]:
    """The slices in the order to correct them: uncertain first, spread through the stack.

    Greedy: the next slice is the most uncertain one at least `min_gap` slices away from
    every slice already picked; when none is left, the gap is halved (down to 0, which
    takes the rest in uncertainty order).

    Parameters
    ----------
    ranking
        :func:`rank_by_uncertainty` records (``"slice"`` keys), most uncertain first.
    min_gap
        Smallest distance between picks at first; None = a quarter of the slices' span
        (so the first two picks of 20 slices lie at least 5 apart).

    Returns
    -------
    list of int
        Every ranked slice once.
    """
    slices = [int(record["slice"]) for record in ranking]
    if not slices:
        return []
    if min_gap is None:
        min_gap = max(1, (max(slices) - min(slices) + 1) // 4)
    gap = max(0, int(min_gap))
    picked: list[int] = []
    left = list(slices)
    while left:
        for z in list(left):
            if all(abs(z - p) >= gap for p in picked):
                picked.append(z)
                left.remove(z)
        gap //= 2
    return picked


def rank_by_metric(
    per_slice: list[dict[str, float]], key: str = "rand_fscore", higher_is_better: bool = True
) -> list[dict[str, float]]:
    """Per-slice metric records (from ``metrics.evaluate``) sorted worst first."""

    def badness(record: dict[str, float]) -> float:
        value = record.get(key, float("nan"))
        if value != value:  # NaN: undefined metric, rank last
            return -np.inf
        return -value if higher_is_better else value

    return sorted(per_slice, key=badness, reverse=True)
