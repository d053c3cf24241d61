import numpy as np
import pytest

from napari_unet.engine.config import ModelConfig


@pytest.mark.parametrize("depth,size", [(1, 16), (2, 40), (3, 64)])
def test_output_size_equals_input_size(depth, size):
    from napari_unet.engine.model.unet import build_unet

    model = build_unet(ModelConfig(depth=depth, base_filters=4, dropout=0.1))
    x = np.random.default_rng(0).random((2, size, size + 2**depth, 1), dtype=np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, size, size + 2**depth, 1)
    assert y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1


def test_flop_count_matches_hand_count():
    from napari_unet.engine.model.unet import build_unet, count_flops

    model = build_unet(ModelConfig(depth=1, base_filters=2, batch_norm=False))
    h = w = 8
    expected = (
        2
        * h
        * w
        * (
            9 * 1 * 2
            + 9 * 2 * 2  # down0: two 3x3 convs
            + 0
        )
    )
    bottom = 2 * (h // 2) * (w // 2) * (9 * 2 * 4 + 9 * 4 * 4)
    up = 2 * (h // 2) * (w // 2) * (4 * 4 * 2)  # 2x2 transposed conv on the coarse grid
    dec = 2 * h * w * (9 * 4 * 2 + 9 * 2 * 2)
    head = 2 * h * w * 2 * 1
    assert count_flops(model, h, w) == expected + bottom + up + dec + head
