"""The napari reader: every supported input, masks as Labels, lazy big stacks, no raising."""

from __future__ import annotations

import napari  # noqa: F401  (a test dependency: missing fails)
import numpy as np
import pytest
import tifffile

from napari_unet import _reader
from napari_unet._reader import contrast_limits, get_reader, labels_from_mask


def _read(path):
    reader = get_reader(str(path))
    assert callable(reader), f"no reader for {path}"
    return reader(str(path))


def test_tiff_stack_opens_as_image_with_percentile_contrast(tmp_path, em_stack):
    images, _ = em_stack
    path = tmp_path / "em.tif"
    tifffile.imwrite(path, images, photometric="minisblack")
    [(data, meta, kind)] = _read(path)
    assert kind == "image" and meta["name"] == "em"
    np.testing.assert_array_equal(data, images)
    low, high = meta["contrast_limits"]
    assert low == pytest.approx(np.percentile(images, 1.0))
    assert high == pytest.approx(np.percentile(images, 99.8))


@pytest.mark.parametrize("name", ["em_masks.tif", "Labels.TIFF", "cells_seg.tif", "MASK.tif"])
def test_mask_names_open_as_labels_0_1(tmp_path, em_stack, name):
    _, masks = em_stack
    path = tmp_path / name
    tifffile.imwrite(path, masks * 255, photometric="minisblack")
    [(data, _meta, kind)] = _read(path)
    assert kind == "labels"
    assert data.dtype == np.uint8 and set(np.unique(data)) == {0, 1}
    np.testing.assert_array_equal(data, masks)


def test_instance_labels_keep_their_values(tmp_path):
    labels = np.zeros((2, 16, 16), np.uint16)
    labels[:, 2:6, 2:6] = 1
    labels[:, 8:12, 8:12] = 7
    labels[1, 0:2, 0:2] = 300
    tifffile.imwrite(tmp_path / "nuclei_labels.tif", labels, photometric="minisblack")
    [(data, _, kind)] = _read(tmp_path / "nuclei_labels.tif")
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels)


def test_png_folder_in_natural_order(tmp_path, em_stack):
    import imageio.v3 as iio

    images, _ = em_stack
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in (2, 0, 1):  # written out of order; names need natural sorting
        iio.imwrite(folder / f"s{z * 5}.png", images[z])
    [(data, meta, kind)] = _read(folder)
    assert kind == "image" and meta["name"] == "slices"
    np.testing.assert_array_equal(data, images)


def test_png_mask_folder_and_single_png_and_jpg(tmp_path, em_stack):
    import imageio.v3 as iio

    images, masks = em_stack
    folder = tmp_path / "masks"
    folder.mkdir()
    for z in range(3):
        iio.imwrite(folder / f"m{z}.png", masks[z] * 255)
    [(data, _, kind)] = _read(folder)
    assert kind == "labels"
    np.testing.assert_array_equal(data, masks)
    iio.imwrite(tmp_path / "one.png", images[0])
    [(data, _, kind)] = _read(tmp_path / "one.png")
    assert kind == "image" and data.shape == (1, 48, 48)
    iio.imwrite(tmp_path / "photo.jpg", images[0])
    [(data, _, kind)] = _read(tmp_path / "photo.jpg")
    assert kind == "image" and data.shape == (1, 48, 48)


def test_zarr_store(tmp_path, em_stack):
    import zarr

    images, _ = em_stack
    store = tmp_path / "volume.zarr"
    array = zarr.open(
        str(store), mode="w", shape=images.shape, dtype=images.dtype, chunks=(1, 48, 48)
    )
    array[:] = images
    [(data, meta, kind)] = _read(store)
    assert kind == "image" and meta["name"] == "volume"
    np.testing.assert_array_equal(np.asarray(data), images)


def test_big_stacks_open_lazily(tmp_path, em_stack, monkeypatch):
    import dask.array as da

    images, masks = em_stack
    tifffile.imwrite(tmp_path / "big.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "big_mask.tif", masks * 255, photometric="minisblack")
    monkeypatch.setattr(_reader, "LAZY_BYTES", 1000)
    [(data, meta, kind)] = _read(tmp_path / "big.tif")
    assert isinstance(data, da.Array) and kind == "image"
    np.testing.assert_array_equal(data.compute(), images)
    assert meta["contrast_limits"][1] > meta["contrast_limits"][0]
    [(data, _, kind)] = _read(tmp_path / "big_mask.tif")
    assert isinstance(data, da.Array) and kind == "labels"


@pytest.mark.parametrize("bad", [None, 123, "", "/no/such/file.txt", ["a.tif", "b.txt"]])
def test_get_reader_returns_none_and_never_raises(bad):
    assert get_reader(bad) is None


def test_get_reader_refuses_foreign_files_and_empty_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None


def test_unreadable_file_is_a_notification_not_an_exception(tmp_path, notifications):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\x00" * 20)
    reader = get_reader(str(path))
    assert callable(reader)
    assert reader(str(path)) == [(None,)]  # napari's "no layers" sentinel: no second error
    [message] = notifications.messages("error")
    assert "broken.tif" in message and "Traceback" not in message


def test_list_of_paths_gives_one_layer_each(tmp_path, em_stack):
    images, masks = em_stack
    tifffile.imwrite(tmp_path / "a.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "a_mask.tif", masks, photometric="minisblack")
    paths = [str(tmp_path / "a.tif"), str(tmp_path / "a_mask.tif")]
    layers = get_reader(paths)(paths)
    assert [kind for *_, kind in layers] == ["image", "labels"]


def test_npe2_routes_files_to_the_reader(tmp_path, em_stack):
    import npe2

    npe2.PluginManager.instance().discover()
    images, _ = em_stack
    tifffile.imwrite(tmp_path / "em.tif", images, photometric="minisblack")
    layers = npe2.read([str(tmp_path / "em.tif")], stack=False, plugin_name="napari-unet")
    np.testing.assert_array_equal(layers[0][0], images)


def test_labels_from_mask_and_contrast_helpers():
    assert labels_from_mask(np.array([[0, 255]], np.uint8)).tolist() == [[0, 1]]
    assert labels_from_mask(np.array([[True, False]])).dtype == np.uint8
    assert labels_from_mask(np.array([[0.0, 0.7, 0.2]])).tolist() == [[0, 1, 0]]
    assert labels_from_mask(np.array([[0.0, 2.0, 5.0]])).tolist() == [[0, 2, 5]]
    assert contrast_limits(np.zeros((2, 4, 4))) == [0.0, 1.0]
    low, high = contrast_limits(np.arange(100, dtype=float).reshape(1, 10, 10))
    assert 0 < low < 2 and 98 < high < 99.9


def test_sample_data():
    from napari_unet._sample_data import make_sample_data

    (images, image_meta, image_kind), (masks, _, mask_kind) = make_sample_data()
    assert (image_kind, mask_kind) == ("image", "labels")
    assert images.shape == masks.shape and images.ndim == 3
    assert set(np.unique(masks)) == {0, 1}
    assert image_meta["contrast_limits"][1] > image_meta["contrast_limits"][0]


def test_labels_or_image_is_decided_by_data_and_whole_word_names(tmp_path):
    """unlabeled-volume.tif is an image; binary stacks are masks whatever their name; integer
    stacks with a whole-word mask name are labels."""
    import tifffile

    from napari_unet._reader import read_layers

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 32, 32), dtype=np.uint8)
    binary = (grey > 128).astype(np.uint8) * 255
    instances = rng.integers(0, 40, (5, 32, 32)).astype(np.uint16)
    cases = {
        "unlabeled-volume.tif": (grey, "image"),
        "segment_raw.tif": (grey, "image"),
        "volume.tif": (binary, "labels"),
        "cells_gt.tif": (instances, "labels"),
        "train-labels.tif": (binary, "labels"),
        "cellMask.tif": (instances, "labels"),
        "nuclei.tif": (instances, "image"),
        "masks-float.tif": (grey.astype(np.float32) / 255, "labels"),
        "stack-float.tif": (grey.astype(np.float32) / 255, "image"),
    }
    for name, (data, expected) in cases.items():
        tifffile.imwrite(tmp_path / name, data)
        [(_, _, kind)] = read_layers(str(tmp_path / name))
        assert kind == expected, name
