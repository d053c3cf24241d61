"""The napari writers: Labels to a TIFF stack or a folder of PNG slices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet._writer import (
    labels_for_writing,
    write_labels_png_slices,
    write_labels_tiff,
)
from napari_unet.engine.errors import UserInputError
from napari_unet.engine.io.stacks import read_mask, read_stack


def test_binary_labels_round_trip_through_tiff_as_0_255(tmp_path, em_stack):
    _, masks = em_stack
    [written] = write_labels_tiff(str(tmp_path / "mask.tif"), masks, {})
    assert set(np.unique(read_stack(written))) == {0, 255}
    np.testing.assert_array_equal(read_mask(written), masks)
    write_labels_tiff(str(tmp_path / "mask.tif"), 1 - masks, {})  # the dialog asked already
    np.testing.assert_array_equal(read_mask(written), 1 - masks)


def test_instance_labels_round_trip_raw(tmp_path):
    labels = np.zeros((2, 8, 8), np.int32)
    labels[0, :2, :2] = 3
    labels[1, 4:, 4:] = 70000
    [written] = write_labels_tiff(str(tmp_path / "labels.tif"), labels, {})
    np.testing.assert_array_equal(read_stack(written), labels)


def test_png_slices_round_trip_and_never_replace_a_folder(tmp_path, em_stack):
    _, masks = em_stack
    [folder] = write_labels_png_slices(str(tmp_path / "mask_png") + "/", masks, {})
    assert sorted(p.name for p in (tmp_path / "mask_png").iterdir()) == [
        "slice0000.png",
        "slice0001.png",
        "slice0002.png",
    ]
    np.testing.assert_array_equal(read_mask(folder), masks)
    with pytest.raises(UserInputError, match="exists"):
        write_labels_png_slices(str(tmp_path / "mask_png"), masks, {})


def test_png_refuses_labels_beyond_uint16():
    with pytest.raises(UserInputError, match="PNG"):
        labels_for_writing(np.array([[0, 70000]]), png=True)
    assert labels_for_writing(np.array([[0, 300]]), png=True).dtype == np.uint16
    assert labels_for_writing(np.array([[False, True]])).tolist() == [[0, 255]]


def test_npe2_picks_the_writers(tmp_path):
    import npe2 as npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    writer, _path = pm.get_writer(str(tmp_path / "m.tif"), ["labels"], "napari-unet")
    assert writer.command == "napari-unet.write_labels_tiff"
    commands = [
        w.command
        for w in pm.iter_compatible_writers(["labels"])
        if w.command.startswith("napari-unet")
    ]
    assert commands == ["napari-unet.write_labels_tiff", "napari-unet.write_labels_png_slices"]


def test_napari_saves_a_labels_layer_with_the_plugin(tmp_path, em_stack):
    import napari  # noqa: F401  (a test dependency: missing fails)
    from napari.layers import Labels

    _, masks = em_stack
    layer = Labels(masks, name="corrected")
    written = layer.save(str(tmp_path / "corrected.tif"), plugin="napari-unet")
    assert written == [str(tmp_path / "corrected.tif")]
    np.testing.assert_array_equal(read_mask(tmp_path / "corrected.tif"), masks)
