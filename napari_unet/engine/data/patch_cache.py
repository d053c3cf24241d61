"""A disk cache of the prepared training data, tiled into patches, reused across runs.

With ``data.patch_cache: FOLDER`` the data that training would prepare (read,
flat-field corrected, normalized, resized, weighted) is stored as
``FOLDER/prepared-<key>.npz``. The training slices are cut into overlapping
square tiles of ``data.cache_tile`` pixels (default twice ``train.patch_size``;
half a patch of overlap; tiles without labelled pixels are dropped), so a large
image becomes many small training slices; validation stays whole.

The key is a SHA-256 over the cache format, the data's fingerprint (path, size
and modification time of every file read, or the bytes of in-memory arrays) and
every setting that shapes the prepared arrays (the ``data`` section,
``train.border_weights``, ``train.seed``, ``train.patch_size``), so a change in
any of them misses the cache. Files are written atomically and read with
``np.load(allow_pickle=False)``; an unreadable cache file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import UserInputError

__all__ = [
    "CACHE_VERSION",
    "cache_key",
    "cache_path",
    "cached_prepare",
    "fingerprint",
    "tile_stacks",
]

#: Bump when the stored arrays change meaning.
CACHE_VERSION = 1
_ARRAYS = (
    *("train_images", "train_masks", "train_weights", "val_images", "val_masks", "val_weights"),
    *("test_images", "test_masks", "test_weights"),
)
_log = logging.getLogger(__name__)


def fingerprint(item: Any) -> Any:
    """A JSON-able description of a data source that changes when its content does.

    Paths: every file below it with size and modification time (ns); arrays:
    shape, dtype and SHA-256 of the bytes; None stays None.
    """
    if item is None:
        return None
    if isinstance(item, (str, Path)):
        path = Path(item).expanduser().resolve()
        if not path.exists():
            return {"path": str(path), "missing": True}
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        entries = []
        for file in files:
            stat = file.stat()
            entries.append([str(file), stat.st_size, stat.st_mtime_ns])
        return {"path": str(path), "files": entries}
    arr = np.ascontiguousarray(np.asarray(item))
    digest = hashlib.sha256(arr.view(np.uint8).reshape(-1).data).hexdigest()
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": digest}


def cache_key(config: Any, sources: tuple[Any, ...]) -> str:
    """SHA-256 hex key of the data `sources` and the preparation settings of `config`."""
    data = config.data.model_dump(mode="json", exclude={"patch_cache"})
    named = [data.get(k) for k in ("images", "masks", "val_images", "val_masks", "dataset")]
    named.append((data.get("frames") or {}).get("folder"))
    payload = {
        "version": CACHE_VERSION,
        "sources": [fingerprint(s) for s in sources],
        "config_sources": [fingerprint(n) for n in named],
        "data": data,
        "border_weights": config.train.border_weights.model_dump(mode="json"),
        "seed": config.train.seed,
        "patch_size": config.train.patch_size,
    }
    model = config.model
    if model.task != "binary" or model.in_channels is not None:  # targets depend on the task
        payload["task"] = [model.task, model.classes, model.in_channels]
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_path(config: Any, key: str) -> Path:
    """``data.patch_cache / prepared-<first 20 hex digits>.npz``."""
    return Path(config.data.patch_cache).expanduser() / f"prepared-{key[:20]}.npz"


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def tile_stacks(
    images: np.ndarray, masks: np.ndarray, weights: np.ndarray, tile: int, overlap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``(Z, Y, X)`` stacks into ``(N, T, T)`` tiles (``T = min(tile, Y, X)`` per axis).

    Neighbouring tiles share at least `overlap` pixels; tiles whose weights are
    all 0 (nothing labelled) are dropped, unless that would drop every tile.
    """
    height, width = images.shape[1:3]  # (Z, Y, X) or (Z, Y, X, C)
    th, tw = min(tile, height), min(tile, width)
    boxes = [
        (z, y, x)
        for z in range(images.shape[0])
        for y in _tile_starts(height, th, overlap)
        for x in _tile_starts(width, tw, overlap)
    ]
    keep = [b for b in boxes if weights[b[0], b[1] : b[1] + th, b[2] : b[2] + tw].any()]
    boxes = keep or boxes

    def cut(arr: np.ndarray) -> np.ndarray:
        return np.stack([arr[z, y : y + th, x : x + tw] for z, y, x in boxes])

    return cut(images), cut(masks), cut(weights)


def _save(path: Path, prepared: Any) -> None:
    arrays = {k: getattr(prepared, k) for k in _ARRAYS if getattr(prepared, k) is not None}
    arrays["description"] = np.array(json.dumps(prepared.description, default=str))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    except (OSError, UserInputError) as exc:
        _log.warning("could not write the patch cache %s: %s", path, exc)


def _load(path: Path) -> Any:
    from .prepared_data import PreparedData

    with np.load(path, allow_pickle=False) as stored:
        values = {k: (stored[k] if k in stored.files else None) for k in _ARRAYS}
        description = json.loads(str(stored["description"]))
    return PreparedData(description=description, **values)


def cached_prepare(config: Any, sources: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The prepared data for `config` and `sources`, from the cache or built and stored.

    Parameters
    ----------
    config
        The whole config; ``data.patch_cache`` is the cache folder.
    sources
        The images, masks, val images and val masks as given (arrays, paths or None).
    build
        Prepares the data from scratch (``PreparedData``); its training stacks
        are then tiled before storing.

    Returns
    -------
    PreparedData
        With ``description["patch_cache"]`` naming the file and whether it was a hit.
    """
    key = cache_key(config, sources)
    path = cache_path(config, key)
    if path.exists():
        try:
            prepared = _load(path)
        except (OSError, ValueError, KeyError) as exc:
            _log.warning("rebuilding the unreadable patch cache %s: %s", path, exc)
        else:
            prepared.description["patch_cache"] = {"path": str(path), "hit": True}
            return prepared
    prepared = build()
    tile = config.data.cache_tile or 2 * config.train.patch_size
    tile = max(tile, config.train.patch_size)
    images, masks, weights = tile_stacks(
        prepared.train_images,
        prepared.train_masks,
        prepared.train_weights,
        tile,
        config.train.patch_size // 2,
    )
    prepared.train_images, prepared.train_masks, prepared.train_weights = images, masks, weights
    prepared.description["train_tiles"] = int(images.shape[0])
    prepared.description["cache_tile"] = int(tile)
    _save(path, prepared)
    prepared.description["patch_cache"] = {"path": str(path), "hit": False}
    return prepared
