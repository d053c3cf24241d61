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


def _expected_window(length: int, start: int, size: int, ramp: int, first: bool, last: bool):
    """The blending weight along one axis, written out independently of tiling.py:
    1, with squared-sine ramps of `ramp` pixels on the sides that meet a neighbour."""
    i = np.arange(length)[:, None] - start
    inside = (i >= 0) & (i < size)
    w = np.ones((length, 1))
    if ramp <= 0:
        return np.where(inside, w, 0.0)[:, 0]
    if not first:
        w = np.where(i < ramp, np.sin(0.5 * np.pi * (i + 0.5) / ramp) ** 2, w)
    if not last:
        w = np.where(i >= size - ramp, np.sin(0.5 * np.pi * (size - i - 0.5) / ramp) ** 2, w)
    return np.where(inside, w, 0.0)[:, 0]


def test_blending_on_an_unequal_grid_matches_the_known_weight_map():
    """3 x 2 tiles of 80 px on a 200 x 136 slice, overlapping by 20 and 24 px (more than
    the 16 px ramps). Each tile predicts its own constant; the blended slice must be
    the weight map's average of them, pixel by pixel."""
    from napari_unet.engine.events import drain
    from napari_unet.engine.inference.predict import predict_tiles

    height, width, ramp = 200, 136, 16
    tiles = tile_grid((height, width), 96, ramp, 8)
    ys, xs = sorted({t.y for t in tiles}), sorted({t.x for t in tiles})
    assert (
        ys == [0, 60, 120] and xs == [0, 56] and {(t.height, t.width) for t in tiles} == {(80, 80)}
    )
    value = {(t.y, t.x): float(k + 1) for k, t in enumerate(tiles)}
    image = np.zeros((height, width), np.float32)
    for t in tiles:  # each tile's top-left pixel says which tile it is
        image[t.y, t.x] = t.y * 1000 + t.x

    def runner(batch):
        keys = [divmod(int(b[0, 0]), 1000) for b in batch]
        return np.stack([np.full(b.shape, value[k], np.float32) for b, k in zip(batch, keys)])

    windows = [blend_window(t, ramp) for t in tiles]
    crop = (slice(0, height), slice(0, width))
    blended = drain(predict_tiles(runner, lambda z: image, 1, tiles, windows, crop, 4))[0]

    total = np.zeros((height, width))
    weighted = np.zeros((height, width))
    for t in tiles:
        wy = _expected_window(height, t.y, t.height, ramp, t.y == ys[0], t.y == ys[-1])
        wx = _expected_window(width, t.x, t.width, ramp, t.x == xs[0], t.x == xs[-1])
        w = np.maximum(np.outer(wy, wx), 1e-6) * (np.outer(wy, wx) > 0)
        total += w
        weighted += w * value[(t.y, t.x)]
    np.testing.assert_allclose(blended, weighted / total, rtol=1e-5, atol=1e-6)
    # where one tile alone covers a pixel, it is that tile's value exactly
    assert blended[5, 5] == value[(0, 0)] and blended[195, 130] == value[(120, 56)]
    # in an overlap the ramps decide: not the plain mean of the tiles there
    y, x = 62, 10  # 2 px into tile (60, 0)'s ramp, where tile (0, 0) has full weight
    rise = np.sin(0.5 * np.pi * 2.5 / ramp) ** 2
    mix = (value[(0, 0)] * 1.0 + value[(60, 0)] * rise) / (1.0 + rise)
    assert blended[y, x] == pytest.approx(mix, rel=1e-5)
    assert abs(blended[y, x] - (value[(0, 0)] + value[(60, 0)]) / 2) > 0.3


def test_pad_to_multiple_small_and_odd():
    img = np.arange(15, dtype=np.float32).reshape(3, 5)
    out, (h, w) = pad_to_multiple(img, 8)
    assert out.shape == (8, 8) and (h, w) == (3, 5)
    np.testing.assert_array_equal(out[:3, :5], img)
    one = np.ones((1, 1), dtype=np.float32)
    assert pad_to_multiple(one, 16)[0].shape == (16, 16)
