"""Writing ``<image> prediction`` without losing the user's corrections.

:class:`LabelsWriter` turns a probability layer and a threshold into the labels
layer, for a new prediction and for every move of the threshold slider: a worker
(:func:`~.predict_jobs.labels_job`) thresholds the probability slice by slice into
*new* labels (numpy, or a new zarr array for lazy stacks), copying the slices the
user edited or marked as reviewed from the current labels; back on the GUI thread,
slices painted while it ran are copied too, the layer's data is swapped in one
assignment and the edit tracker takes the rewritten slices as their new baseline.
One notification names the slices kept.

Only one thresholding runs at a time: a newer request stops the running one and
starts when it ends. The GUI thread never reads or writes more than the few slices
painted during a run.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import notify
from .layer_utils import find_layer
from .predict_jobs import LabelsResult, labels_job
from .progress import TaskProgress
from .workers import Job, start_job

if TYPE_CHECKING:
    import napari
    from qtpy.QtWidgets import QLabel, QProgressBar

    from .loop_edits import EditTracker
    from .workers import JobRegistry

__all__ = ["LabelsWriter", "slices_text"]


def slices_text(slices: set[int] | list[int]) -> str:
    """``"slice 3"`` / ``"slices 1, 4, 7"`` (the first 20, then a count)."""
    ordered = sorted(int(z) for z in slices)
    shown = ", ".join(str(z) for z in ordered[:20])
    more = f" and {len(ordered) - 20} more" if len(ordered) > 20 else ""
    return f"slice {shown}" if len(ordered) == 1 else f"slices {shown}{more}"


class LabelsWriter:
    """Threshold a probability into its labels layer in a worker, keeping edited slices.

    Parameters
    ----------
    viewer
        The napari viewer.
    jobs
        The dock's job registry.
    edits
        The edit tracker (which slices to keep).
    bar, label
        The Predict tab's progress bar and status label (thresholding a lazy stack
        takes a while).
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        jobs: JobRegistry,
        edits: EditTracker,
        bar: QProgressBar | None = None,
        label: QLabel | None = None,
    ) -> None:
        self.viewer = viewer
        self.jobs = jobs
        self.edits = edits
        self.progress = TaskProgress("Thresholding", bar, label)
        self._progress_total = 0
        self.job: Job | None = None
        self._pending: dict[str, Any] | None = None
        self._arrays = 0
        self._old_arrays: list[Path] = []
        self._last_note = ""

    @property
    def busy(self) -> bool:
        """True while a thresholding runs."""
        return self.job is not None and self.job.running

    def write(
        self,
        probability: Any,
        name: str,
        threshold: float,
        reason: str,
        placement: dict[str, Any] | None = None,
        scratch: Path | None = None,
        on_written: Callable[[Any], None] | None = None,
    ) -> None:
        """Write ``probability > threshold`` into the Labels layer called `name`.

        Parameters
        ----------
        probability
            Probability data (numpy, or dask for a lazy stack).
        name
            The labels layer (added if missing).
        threshold
            The threshold.
        reason
            ``"prediction"`` or ``"threshold"`` (for the notification).
        placement
            ``scale``/``translate`` of a new layer.
        scratch
            The lazy prediction's zarr group: the labels go to a new array in it.
        on_written
            Called with the labels layer once written (not after a superseded run).
        """
        request = {
            "on_written": on_written,
            "probability": probability,
            "name": name,
            "threshold": float(threshold),
            "reason": reason,
            "placement": placement or {},
            "scratch": scratch,
        }
        if self.busy:
            if self._pending is not None and self._pending["reason"] == "prediction":
                request["reason"] = "prediction"  # a newer threshold of a new prediction
            self._pending = request
            self.job.request_stop()  # type: ignore[union-attr]
            return
        self._start(request)

    def labels_layer(self, name: str, shape: tuple[int, ...] | None = None) -> Any:
        """The Labels layer called `name` (of that `shape`, if given), or None."""
        from napari.layers import Labels

        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if isinstance(layer, Labels) and (shape is None or tuple(layer.data.shape) == shape):
                return layer
        return None

    def _start(self, request: dict[str, Any]) -> None:
        probability = request["probability"]
        layer = self.labels_layer(request["name"], tuple(probability.shape))
        keep = self.edits.kept_slices(layer) if layer is not None else set()
        counters = self.edits.modification_counters(layer) if layer is not None else {}
        target = None
        if request["scratch"] is not None:
            self._arrays += 1
            target = Path(request["scratch"]) / f"labels-{self._arrays}"
        if target is not None or probability.shape[0] > 64:
            self._progress_total = 0
            self.progress.start(1, f"thresholding at {request['threshold']:.2f}…")
        old = layer.data if layer is not None else None

        def on_returned(result: LabelsResult | None) -> None:
            if self.job is job and result is not None:
                self._apply(result, request, layer, counters, target)

        job = start_job(
            self.jobs,
            "thresholding",
            labels_job,
            probability,
            old,
            request["threshold"],
            keep,
            target,
            on_yielded=self._on_progress,
            on_returned=on_returned,
            on_errored=lambda exc: notify.report_exception(exc, "thresholding the prediction"),
            on_finished=self._on_finished,
            pass_events=True,
        )
        self.job = job

    def _on_progress(self, event: Any) -> None:
        if not self.progress.active:
            return
        if event.total != self._progress_total:
            self._progress_total = event.total
            self.progress.start(event.total)
        self.progress.update(
            event.done, f"thresholding: {event.done}/{event.total} slices", event.eta
        )

    def _on_finished(self) -> None:
        self.progress.close()
        pending, self._pending = self._pending, None
        if pending is not None:
            self._start(pending)

    def _apply(
        self,
        result: LabelsResult,
        request: dict[str, Any],
        layer: Any,
        counters: dict[int, int],
        target: Path | None,
    ) -> None:
        """On the GUI thread: copy slices painted meanwhile, swap the data, re-baseline."""
        name, reason = request["name"], request["reason"]
        live = find_layer(self.viewer, layer) if layer is not None else None
        if live is not None and tuple(live.data.shape) == tuple(np.shape(result.labels)):
            kept = self.edits.kept_slices(live) | self.edits.modified_since(live, counters)
            for z in sorted(kept - result.kept):  # painted while the worker ran
                _copy_slice(result.labels, live.data, z)
            with self.edits.writing(live):
                live.data = result.labels
            self.edits.rewritten(live, {z: d for z, d in result.digests.items() if z not in kept})
            self._notify_kept(live.name, kept, reason, result.threshold)
            self._retire(target)
            self._written(request, live)
            return
        if live is None and layer is not None and self._had_edits(layer):
            name = f"{name} (new)"  # never replace a layer with edits by another shape
        self.edits.preload(result.labels, result.digests)
        new = self.viewer.add_labels(result.labels, name=name, opacity=0.5, **request["placement"])
        self.edits.track(new)
        self._written(request, new)

    def _written(self, request: dict[str, Any], layer: Any) -> None:
        if request["on_written"] is not None:
            request["on_written"](layer)

    def _had_edits(self, layer: Any) -> bool:
        edits = self.edits.edits(layer)
        return bool(edits is not None and edits.kept())

    def _notify_kept(self, name: str, kept: set[int], reason: str, threshold: float) -> None:
        if not kept:
            self._last_note = ""
            return
        what = "the new prediction" if reason == "prediction" else f"threshold {threshold:.2f}"
        note = (
            f"Kept your corrections on {slices_text(kept)} of '{name}': {what} was applied "
            "to the other slices only"
        )
        if note != self._last_note or reason == "prediction":
            notify.info(note)
        self._last_note = note

    def _retire(self, new: Path | None) -> None:
        """Delete lazy labels arrays two rewrites old (the last one may still be drawn)."""
        if new is None:
            return
        self._old_arrays.append(new)
        while len(self._old_arrays) > 2:
            folder = self._old_arrays.pop(0)
            threading.Thread(target=shutil.rmtree, args=(folder, True), daemon=True).start()

    def shutdown(self) -> None:
        """Close the progress (the job itself is stopped with the dock's others)."""
        self._pending = None
        self.progress.close()


def _copy_slice(dst: Any, src: Any, z: int) -> None:
    """``dst[z] = src[z]`` for stacks (a 2D layer: the whole image)."""
    if len(dst.shape) == 2:
        dst[...] = np.asarray(src[...])
    else:
        dst[z] = np.asarray(src[z])
