"""Issue 7.1: the bad-input corpus through the engine readers and the napari reader.

Engine (`read_stack`, `read_mask`, `open_lazy`): a result of the documented
shape or a UserInputError with a one-line message naming the file.
napari reader: never raises; a refused file gives exactly one one-line error
notification and napari's "no layers" sentinel; a valid one gives one layer
with the engine's data. No input file is changed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io.stacks import open_lazy, read_mask, read_stack

from .corpus import MARKER_NAME, build_corpus, hash_tree

#: Refused only when the pixels are read: a lazy stack is not scanned on opening.
LAZY_OK = {"all-nan"}

# the napari reader's fallback for unexpected exceptions ("cannot read X: KeyError: ...")
_UNEXPECTED = re.compile(r": [A-Z]\w*(Error|Exception|Warning): ")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader-corpus")
    entries = [e for e in build_corpus(root) if e.kind in ("image", "mask")]
    return root, entries, hash_tree(root)


def _one_line_naming(message: str, path) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert path.name in message or path.parent.name in message, message


def test_engine_readers(corpus):
    root, entries, digests = corpus
    counts = {"ok": 0, "refused": 0}
    for entry in entries:
        readers = [read_stack, read_mask, open_lazy]
        for reader in readers:
            try:
                data = np.asarray(reader(entry.path))  # a lazy stack may refuse when computed
            except UserInputError as exc:
                counts["refused"] += 1
                _one_line_naming(str(exc), entry.path)
                if entry.kind == "image" and reader is not read_mask:
                    assert entry.read != "ok", f"{reader.__name__} refused {entry.name}: {exc}"
                continue
            counts["ok"] += 1
            assert data.ndim == 3 and data.size > 0, (entry.name, data.shape)
            if entry.kind == "image" and not (reader is open_lazy and entry.name in LAZY_OK):
                assert entry.read != "error", f"{reader.__name__} accepted {entry.name}"
            if reader is read_mask:
                assert data.dtype == np.uint8 and set(np.unique(data)) <= {0, 1}
    assert counts["ok"] and counts["refused"]
    assert hash_tree(root) == digests and not (root / MARKER_NAME).exists()


def test_lazy_and_eager_agree(corpus):
    _, entries, _ = corpus
    for entry in entries:
        if entry.kind != "image" or entry.read != "ok":
            continue
        eager = read_stack(entry.path)
        lazy = np.asarray(open_lazy(entry.path))
        assert lazy.shape == eager.shape, entry.name
        np.testing.assert_array_equal(lazy, eager, err_msg=entry.name)


def test_napari_reader(corpus, notifications):
    import napari  # noqa: F401  (a test dependency: missing fails)

    from napari_unet._reader import get_reader

    root, entries, digests = corpus
    seen = 0
    for entry in entries:
        start = len(notifications.messages("error"))
        reader = get_reader(str(entry.path))
        if reader is None:  # not a file type the plugin claims (e.g. .npy): napari decides
            assert entry.read != "ok" or entry.path.suffix not in (".tif", ".png"), entry.name
            continue
        seen += 1
        layers = reader(str(entry.path))
        errors = notifications.messages("error")[start:]
        if len(layers) == 1 and layers[0][0] is None:  # napari's "no layers" sentinel
            assert len(errors) == 1, (entry.name, errors)
            _one_line_naming(errors[0], entry.path)
            assert not _UNEXPECTED.search(errors[0]), f"unexpected exception: {errors[0]}"
            if entry.kind == "image":
                assert entry.read != "ok", f"reader refused {entry.name}: {errors[0]}"
            continue
        assert not errors, (entry.name, errors)
        assert entry.kind == "mask" or entry.read != "error", f"reader accepted {entry.name}"
        [(data, meta, kind)] = layers
        # a binary stack (the "bool" image: em > 128) is a mask whatever its name
        expected = "labels" if entry.kind == "mask" or entry.name == "bool" else "image"
        assert kind == expected, entry.name
        assert np.asarray(data).shape == read_stack(entry.path).shape, entry.name
        if kind == "image":
            low, high = meta["contrast_limits"]
            assert np.isfinite([low, high]).all() and high > low, entry.name
    assert seen >= 40
    assert hash_tree(root) == digests and not (root / MARKER_NAME).exists()
