import threading

import numpy as np
import pytest

from napari_unet.engine.config import PredictConfig
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.inference.predict import predict, predict_iter
from napari_unet.engine.model.model_folder import load_model


@pytest.fixture(scope="module")
def model(trained_model_dir):
    return load_model(trained_model_dir)


def test_prediction_shape_dtype_and_range(model):
    images, _ = synthetic_em(slices=2, size=(40, 56), seed=5)
    result = predict(model, images)
    assert result.probability.shape == images.shape
    assert result.probability.dtype == np.float32
    assert 0 <= result.probability.min() and result.probability.max() <= 1
    mask = result.mask()
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}


def test_tiled_equals_untiled_away_from_borders(model):
    images, _ = synthetic_em(slices=2, size=160, seed=6)
    untiled = predict(model, images, PredictConfig(tile_size=1024, overlap=16)).probability
    tiled = predict(model, images, PredictConfig(tile_size=48, overlap=16)).probability
    inner = (slice(None), slice(8, -8), slice(8, -8))
    # the depth-2 test network has a small receptive field: blended tiles agree closely
    assert np.abs(tiled[inner] - untiled[inner]).max() < 0.02
    assert np.abs(tiled - untiled).mean() < 0.002


def test_small_odd_and_2d_inputs(model):
    tiny = np.random.default_rng(0).integers(0, 255, (7, 5)).astype(np.uint8)
    result = predict(model, tiny)
    assert result.probability.shape == (1, 7, 5)
    floats = np.random.default_rng(1).normal(size=(2, 33, 17)).astype(np.float64)
    floats[0, 3, 4] = np.nan
    assert predict(model, floats).probability.shape == (2, 33, 17)
    constant = np.full((1, 20, 20), 7, np.int32)
    assert np.isfinite(predict(model, constant).probability).all()


def test_progress_events_and_stop(model):
    images, _ = synthetic_em(slices=4, size=64, seed=7)
    config = PredictConfig(tile_size=32, overlap=8, batch_size=2)
    events = []
    gen = predict_iter(model, images, config)
    for event in gen:
        events.append(event)
    assert events[-1].done == events[-1].total
    assert [e.done for e in events] == sorted(e.done for e in events)
    stop = threading.Event()
    gen = predict_iter(model, images, config, stop=stop)
    next(gen)
    stop.set()
    remaining = list(gen)
    assert remaining == []


def test_tta_is_close_to_plain(model):
    images, _ = synthetic_em(slices=1, size=64, seed=8)
    plain = predict(model, images).probability
    tta = predict(model, images, PredictConfig(tta=True)).probability
    assert np.abs(plain - tta).mean() < 0.2


def test_predicting_does_not_keep_the_model_alive():
    """The compiled-call cache must not hold its keys (models) alive for the session."""
    import gc
    import weakref

    from napari_unet.engine.config import ModelConfig, PredictConfig
    from napari_unet.engine.events import drain
    from napari_unet.engine.inference.predict import _COMPILED, predict_normalized
    from napari_unet.engine.model.unet import build_unet

    model = build_unet(ModelConfig(depth=2, base_filters=4))
    stack = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)
    drain(predict_normalized(model, stack, PredictConfig(tile_size=32, overlap=0), 4))
    assert model in _COMPILED
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
