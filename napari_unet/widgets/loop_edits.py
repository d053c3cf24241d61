"""Which slices of a labels layer the user edited, without copying the volume.

:class:`EditTracker` keeps, per tracked Labels layer, a digest of every slice as
it was predicted (the *baseline*, :func:`napari_unet.engine.autosave.slice_digests`)
and learns from the layer's ``paint`` events which slices the brush, eraser or
fill touched; those slices are hashed again (``set_data`` after an undo re-hashes
them too) and a slice counts as edited while its digest differs from the
baseline. Nothing keeps a copy of the data: a 2 GiB zarr-backed prediction costs
a few bytes per slice.

Hashing runs inline only when the slices are in memory and small
(:data:`SYNC_BYTES`); otherwise in a worker, whose result is applied on the GUI
thread and ignored for slices painted again meanwhile (per-slice modification
counters). A slice painted before its baseline digest was known counts as edited.

The Predict tab owns the tracker (its prediction layers are tracked from the
moment they appear) and the Correct & retrain tab reads it, so a new threshold or
a new prediction rewrites only slices nobody edited or marked as reviewed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from .layer_utils import layer_key, slice_axis, stack_view, unwrap

if TYPE_CHECKING:
    from napari.layers import Labels

    from .workers import JobRegistry

__all__ = ["SYNC_BYTES", "EditTracker", "LayerEdits"]

#: Hash on the GUI thread only when the slices to hash are in memory and at most this big.
SYNC_BYTES = 8 * 2**20


@dataclass
class LayerEdits:
    """What the tracker knows about one layer.

    Attributes
    ----------
    n_slices
        Slices of the layer (1 for a 2D layer).
    baseline
        Digest of each slice as predicted (a missing slice: not known yet).
    current
        Digest of painted slices as last hashed (missing: hashing is pending).
    painted
        Slices touched since the baseline (edited unless hashed equal to it again).
    unknown
        Slices painted before their baseline digest was known (counted as edited).
    reviewed
        Slices marked as reviewed (correct as predicted) or restored as edited.
    counters
        Paint events per slice, to drop hashes that a newer stroke made stale.
    generation
        Bumped whenever the whole baseline is replaced.
    """

    n_slices: int
    baseline: dict[int, str] = field(default_factory=dict)
    current: dict[int, str] = field(default_factory=dict)
    painted: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)
    reviewed: set[int] = field(default_factory=set)
    counters: dict[int, int] = field(default_factory=dict)
    generation: int = 0
    recent: list[int] = field(default_factory=list)

    def edited(self) -> set[int]:
        """Slices whose content differs from the baseline (or may: hashing pending)."""
        out = set(self.unknown)
        for z in self.painted:
            now, then = self.current.get(z), self.baseline.get(z)
            if now is None or then is None or now != then:
                out.add(z)
        return out

    def kept(self) -> set[int]:
        """Slices a new prediction must not overwrite: edited or reviewed."""
        return self.edited() | self.reviewed

    def touch(self, slices: Iterable[int]) -> set[int]:
        """Record a paint of `slices` (returns those within the layer)."""
        valid = {int(z) for z in slices if 0 <= int(z) < self.n_slices}
        for z in valid:
            self.painted.add(z)
            self.current.pop(z, None)
            self.counters[z] = self.counters.get(z, 0) + 1
        self.recent = [z for z in self.recent if z not in valid][-8 + len(valid) :] + sorted(valid)
        return valid

    def state(self) -> str:
        """A digest of the layer's content as far as the tracker knows it (for autosave)."""
        from napari_unet.engine.autosave import combined_digest

        parts = []
        for z in range(self.n_slices):
            if z in self.painted:
                parts.append(self.current.get(z) or f"?{self.counters.get(z, 0)}")
            else:
                parts.append(self.baseline.get(z) or f"?{self.generation}")
        return combined_digest(parts, f"{self.n_slices}:{self.generation}")


class EditTracker(QObject):
    """Per-slice edit tracking of labels layers (see the module docstring).

    Parameters
    ----------
    jobs
        Where hashing workers are registered (stopped and joined when the dock closes).

    Attributes
    ----------
    changed
        Emitted on the GUI thread when edited or reviewed slices may have changed.
    """

    changed = Signal()

    def __init__(self, jobs: JobRegistry, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self._edits: dict[Hashable, LayerEdits] = {}
        self._layers: dict[Hashable, Any] = {}
        self._connections: dict[Hashable, list[tuple[Any, Any]]] = {}
        self._writing: set[Hashable] = set()
        self._pending: dict[Hashable, set[int]] = {}
        self._hashing: set[Hashable] = set()
        self._preloaded: dict[int, tuple[Any, dict[int, str]]] = {}
        self._closed = False
        self._timer = QTimer(self)  # strokes come in bursts: hash once they pause
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._hash_pending)

    # ----------------------------------------------------------------- tracking

    def track(self, layer: Labels) -> LayerEdits:
        """The LayerEdits of `layer`; the first call takes its baseline digests."""
        key = layer_key(layer)
        edits = self._edits.get(key)
        if edits is not None:
            return edits
        layer = unwrap(layer)
        edits = self._edits[key] = LayerEdits(n_slices=_n_slices(layer.data))
        self._layers[key] = layer
        slots = []
        for name, slot in (
            ("paint", self._on_paint),
            ("data", self._on_data),
            ("set_data", self._on_set_data),
        ):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(slot)
                slots.append((emitter, slot))
        self._connections[key] = slots
        data = layer.data
        known = self._preloaded.pop(id(data), None)
        if known is not None and known[0] is data and len(known[1]) == edits.n_slices:
            edits.baseline = dict(known[1])  # digested while the labels were written
        else:
            self._take_baseline(key)
        return edits

    def preload(self, data: Any, digests: dict[int, str]) -> None:
        """Digests of `data`, about to become a new layer's data (saves hashing it again)."""
        self._preloaded = {id(data): (data, dict(digests))}

    def edits(self, layer: Labels | None) -> LayerEdits | None:
        """The LayerEdits of `layer` if it is tracked."""
        return None if layer is None else self._edits.get(layer_key(layer))

    def forget(self, keep: Iterable[Any]) -> None:
        """Stop tracking every layer not in `keep` (e.g. the viewer's layers)."""
        live = {layer_key(layer) for layer in keep}
        for key in [k for k in self._edits if k not in live]:
            self._untrack(key)

    def _untrack(self, key: Hashable) -> None:
        for emitter, slot in self._connections.pop(key, []):
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                emitter.disconnect(slot)
        self._edits.pop(key, None)
        self._layers.pop(key, None)
        self._pending.pop(key, None)

    # ----------------------------------------------------------------- queries

    def edited_slices(self, layer: Labels, exact: bool = True) -> list[int]:
        """Edited slices of `layer` (tracked from now on if it was not).

        With `exact`, a small in-memory layer is first re-hashed whole (catches changes
        made without a paint event, e.g. from the console); large layers rely on paint
        events.
        """
        edits = self.track(layer)
        if exact:
            self.rescan(layer, only_if_small=True)
        return sorted(edits.edited())

    def kept_slices(self, layer: Labels) -> set[int]:
        """Edited and reviewed slices of `layer`: what a new prediction must keep."""
        edits = self.track(layer)
        self.rescan(layer, only_if_small=True)
        return edits.kept()

    def rescan(self, layer: Labels, only_if_small: bool = False) -> None:
        """Hash every slice of `layer` again and compare with the baseline."""
        key = layer_key(layer)
        edits = self._edits.get(key)
        if edits is None:
            return
        data = self._layers[key].data
        if only_if_small and not _small(data, range(edits.n_slices)):
            return
        self._hash(key, set(range(edits.n_slices)), rescan=True)

    def modification_counters(self, layer: Labels) -> dict[int, int]:
        """A copy of the per-slice paint counters (see :meth:`modified_since`)."""
        edits = self.edits(layer)
        return dict(edits.counters) if edits is not None else {}

    def modified_since(self, layer: Labels, counters: dict[int, int]) -> set[int]:
        """Slices painted since `counters` were taken."""
        edits = self.edits(layer)
        if edits is None:
            return set()
        return {z for z, n in edits.counters.items() if counters.get(z, 0) != n}

    # ----------------------------------------------------------------- changes

    def mark_reviewed(self, layer: Labels, slices: Iterable[int]) -> None:
        """Count `slices` as reviewed (kept by new predictions, used by fine-tuning)."""
        edits = self.track(layer)
        edits.reviewed |= {int(z) for z in slices}
        self.changed.emit()

    def accept_baseline(self, layer: Labels) -> None:
        """Take the layer as it is now as the new baseline (no edits, no reviewed marks)."""
        edits = self.track(layer)
        edits.reviewed.clear()
        self._reset(layer_key(layer))

    @contextlib.contextmanager
    def writing(self, layer: Labels) -> Iterator[None]:
        """Replace the layer's data (``layer.data = ...``) without losing its edits:
        follow with :meth:`rewritten`."""
        key = layer_key(layer)
        self._writing.add(key)
        try:
            yield
        finally:
            self._writing.discard(key)

    def rewritten(self, layer: Labels, digests: dict[int, str]) -> None:
        """The slices in `digests` were rewritten (new prediction): they are the new
        baseline; other slices keep their edits and reviewed marks."""
        edits = self.track(layer)
        n = _n_slices(unwrap(layer).data)
        if n != edits.n_slices:  # another shape: nothing carries over
            self._edits[layer_key(layer)] = edits = LayerEdits(n_slices=n)
        for z, digest in digests.items():
            edits.baseline[z] = digest
            edits.painted.discard(z)
            edits.unknown.discard(z)
            edits.current.pop(z, None)
        self.changed.emit()

    # ----------------------------------------------------------------- events

    def _on_paint(self, event: Any) -> None:
        layer = getattr(event, "source", None)
        edits = self.edits(layer)
        if edits is None or self._closed:
            return
        slices = _painted_slices(getattr(event, "value", None), tuple(layer.data.shape))
        if slices is None:  # unknown payload: every painted slice is re-hashed
            slices = set(edits.painted) or set(range(edits.n_slices))
        touched = edits.touch(slices)
        edits.unknown |= {z for z in touched if z not in edits.baseline}  # baseline pending
        self._schedule(layer_key(layer), touched)
        self.changed.emit()

    def _on_set_data(self, event: Any) -> None:
        """A refresh (also after undo/redo): re-hash the slices painted last (an undo
        changes the latest strokes; :meth:`rescan` checks every slice)."""
        layer = getattr(event, "source", None)
        edits = self.edits(layer)
        if edits is not None and edits.recent and not self._closed:
            self._schedule(layer_key(layer), set(edits.recent))

    def _on_data(self, event: Any) -> None:
        """New data set from outside the dock (not a prediction rewrite): new baseline."""
        layer = getattr(event, "source", None)
        key = layer_key(layer) if layer is not None else None
        if key not in self._edits or key in self._writing or self._closed:
            return
        self._edits[key].reviewed.clear()
        self._reset(key)

    def _reset(self, key: Hashable) -> None:
        old = self._edits[key]
        edits = self._edits[key] = LayerEdits(
            n_slices=_n_slices(self._layers[key].data),
            reviewed=old.reviewed,
            generation=old.generation + 1,
        )
        self._pending.pop(key, None)
        self._take_baseline(key)
        if edits is self._edits.get(key):
            self.changed.emit()

    # ----------------------------------------------------------------- hashing

    def _take_baseline(self, key: Hashable) -> None:
        edits = self._edits[key]
        self._hash(key, set(range(edits.n_slices)), baseline=True)

    def _schedule(self, key: Hashable, slices: set[int]) -> None:
        self._pending.setdefault(key, set()).update(slices)
        self._timer.start()

    def _hash_pending(self) -> None:
        for key in list(self._pending):
            if key in self._hashing:
                continue  # re-armed when the running job ends
            slices = self._pending.pop(key)
            if key in self._edits and slices:
                self._hash(key, slices)

    def _hash(
        self, key: Hashable, slices: set[int], baseline: bool = False, rescan: bool = False
    ) -> None:
        """Digest `slices` inline (small, in memory) or in a worker; apply on this thread."""
        from napari_unet.engine.autosave import slice_digests

        edits = self._edits[key]
        data = self._layers[key].data
        stamp = (edits.generation, {z: edits.counters.get(z, 0) for z in slices})

        def apply(digests: dict[int, str]) -> None:
            self._apply(key, stamp, digests, baseline, rescan)

        if _small(data, slices):
            apply(slice_digests(stack_view(data), sorted(slices)))
            return
        from .workers import digest_job, start_job

        self._hashing.add(key)

        def finished() -> None:
            self._hashing.discard(key)
            if self._pending.get(key) and not self._closed:
                self._timer.start()

        start_job(
            self.jobs,
            "edit tracking",
            digest_job,
            stack_view(data),
            sorted(slices),
            on_returned=apply,
            on_finished=finished,
        )

    def _apply(
        self,
        key: Hashable,
        stamp: tuple[int, dict[int, int]],
        digests: dict[int, str],
        baseline: bool,
        rescan: bool,
    ) -> None:
        edits = self._edits.get(key)
        generation, counters = stamp
        if edits is None or edits.generation != generation or self._closed:
            return  # the layer was replaced or dropped meanwhile
        for z, digest in digests.items():
            fresh = edits.counters.get(z, 0) == counters.get(z, 0)
            if baseline:
                if fresh and z not in edits.painted:
                    edits.baseline[z] = digest
                else:
                    edits.unknown.add(z)  # painted while hashing: content as predicted lost
            elif fresh:
                edits.current[z] = digest
                if rescan and z not in edits.painted and digest != edits.baseline.get(z):
                    edits.painted.add(z)  # changed without a paint event (console, script)
        self.changed.emit()

    def shutdown(self) -> None:
        """Disconnect from every layer and stop hashing (idempotent)."""
        self._closed = True
        self._timer.stop()
        for key in list(self._edits):
            self._untrack(key)


def _n_slices(data: Any) -> int:
    return int(stack_view(data).shape[0])


def _small(data: Any, slices: Iterable[int]) -> bool:
    """In memory and at most :data:`SYNC_BYTES` to hash."""
    if not isinstance(data, np.ndarray):
        return False
    view = stack_view(data)
    per_slice = int(np.prod(view.shape[1:], dtype=np.int64)) * view.dtype.itemsize
    return per_slice * len(list(slices)) <= SYNC_BYTES


def _painted_slices(item: Any, shape: tuple[int, ...]) -> set[int] | None:
    """Slices touched by a ``paint`` event's history item (None if it cannot be read)."""
    axis = slice_axis(shape)
    if axis is None:
        return {0}
    if not isinstance(item, (list, tuple)):
        return None
    found: set[int] = set()
    for atom in item:
        key = getattr(atom, "slice_key", None)
        if key is not None:  # a masked paint atom: a bounding box
            part = key[axis] if len(key) > axis else slice(None)
            if isinstance(part, slice):
                start, stop, step = part.indices(shape[axis])
                found.update(range(start, stop, step))
            else:
                found.add(int(part))
        elif isinstance(atom, tuple) and atom and isinstance(atom[0], tuple):
            indices = atom[0]
            if len(indices) > axis:
                found.update(int(z) for z in np.unique(np.asarray(indices[axis])))
        else:
            return None
    return found
