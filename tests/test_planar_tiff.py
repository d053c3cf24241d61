"""A 3- or 4-slice grey stack written by plain ``tifffile.imwrite`` is one page of
separate sample planes tagged RGB(A): it must read as slices, match its mask, and a
file taken as colour must say so in the log."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import tifffile

from napari_unet.engine.config import Config
from napari_unet.engine.data.prepare import _load_pair, prepare_data
from napari_unet.engine.io.readers import reread_to_match
from napari_unet.engine.io.stacks import open_lazy, read_mask, read_stack
from napari_unet.engine.io.tiff import colour_planes

RNG = np.random.default_rng(16)


def _plain(path, arr):
    """What a user's ``tifffile.imwrite(path, arr)`` writes (no photometric given)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, arr)
    return path


@pytest.mark.parametrize("slices", [3, 4])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_plain_imwrite_stack_reads_as_slices(tmp_path, slices, dtype):
    stack = (RNG.random((slices, 24, 20)) * 200).astype(dtype)
    path = _plain(tmp_path / "stack.tif", stack)
    with tifffile.TiffFile(path) as tif:  # the ambiguous layout, as tifffile writes it
        assert tif.series[0].axes == "SYX" and len(tif.pages) == 1
    np.testing.assert_array_equal(read_stack(path), stack)
    np.testing.assert_array_equal(open_lazy(path).compute(), stack)
    assert read_stack(path, planes="colour").shape == (1, 24, 20)  # asked: one colour image


def test_the_valid_pair_of_the_issue_is_accepted(tmp_path):
    images = RNG.integers(0, 255, (4, 48, 48)).astype(np.uint8)
    masks = RNG.random((4, 48, 48)) > 0.5
    image_path = _plain(tmp_path / "img.tif", images)
    mask_path = _plain(tmp_path / "mask.tif", masks)
    assert read_mask(mask_path).shape == (4, 48, 48)
    loaded, loaded_masks = _load_pair(image_path, mask_path, "training")
    assert loaded.shape == loaded_masks.shape == (4, 48, 48)
    config = Config.model_validate({"data": {"val_fraction": 0.25}, "train": {"patch_size": 32}})
    prepared = prepare_data(config, str(image_path), str(mask_path))
    assert prepared.train_images.shape[0] + prepared.val_images.shape[0] == 4


def test_a_real_colour_image_stays_colour_unless_its_partner_says_otherwise(tmp_path, caplog):
    """Planar RGB from another writer (no tifffile shape record) is colour, said in the
    log; paired with a 3-slice mask it is re-read as slices, with a 1-slice mask not."""
    planes = RNG.integers(0, 255, (3, 32, 32)).astype(np.uint8)
    path = tmp_path / "planar-rgb.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate", metadata=None)
    assert colour_planes(path) == 3
    with caplog.at_level(logging.INFO, logger="napari_unet"):
        colour = read_stack(path)
    assert colour.shape == (1, 32, 32)
    assert "planar-rgb.tif is taken as colour (3 samples per pixel)" in caplog.text
    tifffile.imwrite(tmp_path / "m3.tif", np.ones((3, 32, 32), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "m1.tif", np.ones((1, 32, 32), np.uint8), photometric="minisblack")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="napari_unet"):
        images, _ = _load_pair(path, tmp_path / "m3.tif", "training")
    np.testing.assert_array_equal(images, planes)
    assert "read as slices to match its partner's 3 slice(s)" in caplog.text
    images, _ = _load_pair(path, tmp_path / "m1.tif", "training")
    assert images.shape == (1, 32, 32)
    # a tifffile-written 3-slice stack paired with a single-slice mask is read as colour
    stack_path = _plain(tmp_path / "s3.tif", planes)
    images, _ = _load_pair(stack_path, tmp_path / "m1.tif", "training")
    assert images.shape == (1, 32, 32)


def test_only_the_ambiguous_layout_is_ever_re_read(tmp_path):
    contig = tmp_path / "contig-rgb.tif"
    tifffile.imwrite(contig, RNG.integers(0, 255, (32, 32, 3)).astype(np.uint8), photometric="rgb")
    stack = tmp_path / "five.tif"
    tifffile.imwrite(stack, np.zeros((5, 8, 8), np.uint8), photometric="minisblack")
    assert colour_planes(contig) is None and colour_planes(stack) is None
    arr = read_stack(contig)
    assert reread_to_match(contig, arr, 3) is arr  # a contiguous RGB image stays one image
    assert reread_to_match(np.zeros((1, 2, 2)), arr, 3) is arr  # arrays are never re-read
    assert colour_planes(tmp_path / "missing.tif") is None
