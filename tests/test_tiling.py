import itertools

import numpy as np
import pytest

from napari_unet.engine.inference.tiling import axis_tiles, blend_window, pad_to_multiple, tile_grid


@pytest.mark.parametrize("length", [16, 64, 100 - 100 % 8, 512, 1000, 1024])
@pytest.mark.parametrize("tile,overlap", [(64, 8), (256, 32), (512, 32)])
def test_tiles_cover_axis_with_overlap(length, tile, overlap):
    length = max(8, length - length % 8)
    starts, size = axis_tiles(length, tile, overlap, 8)
    assert size % 8 == 0 or size == length
    assert starts[0] == 0 and starts[-1] + size == length
    for a, b in itertools.pairwise(starts):
        assert b - a <= size - overlap  # neighbours share at least `overlap`
    assert size <= max(tile, length)


def test_tiles_are_few():
    starts, size = axis_tiles(1024, 512, 32, 16)
    assert len(starts) == 3 and size <= 512
    starts, size = axis_tiles(512, 512, 32, 16)
    assert starts == [0] and size == 512


def test_blend_weights_partition_of_unity_inside():
    tiles = tile_grid((200, 200), 96, 16, 8)
    total = np.zeros((200, 200))
    for t in tiles:
        total[t.slices] += blend_window(t, 16)
    assert total.min() > 0.5
    ones = np.ones((200, 200))
    acc = np.zeros((200, 200))
    for t in tiles:
        acc[t.slices] += ones[t.slices] * blend_window(t, 16)
    np.testing.assert_allclose(acc / total, 1.0)


def test_pad_to_multiple_small_and_odd():
    img = np.arange(15, dtype=np.float32).reshape(3, 5)
    out, (h, w) = pad_to_multiple(img, 8)
    assert out.shape == (8, 8) and (h, w) == (3, 5)
    np.testing.assert_array_equal(out[:3, :5], img)
    one = np.ones((1, 1), dtype=np.float32)
    assert pad_to_multiple(one, 16)[0].shape == (16, 16)
