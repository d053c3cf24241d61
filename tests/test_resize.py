"""Training and predicting at a fixed resized input, predictions resized back."""

import numpy as np
import tifffile

from napari_unet.cli.main import main
from napari_unet.engine.data.synthetic import synthetic_em
from napari_unet.engine.inference.predict import predict
from napari_unet.engine.model.model_folder import load_model
from napari_unet.engine.training.train import prepare_data, train

from .conftest import tiny_config


def test_train_and_predict_at_a_fixed_size(tmp_path):
    images, masks = synthetic_em(slices=3, size=(40, 56), cells=8, seed=12)
    config = tiny_config(tmp_path, epochs=1, steps_per_epoch=2).with_overrides(
        {"data.resize": [32, 32], "data.flat_field": True}
    )
    prepared = prepare_data(config, images, masks)
    assert prepared.train_images.shape[1:] == (32, 32)
    assert prepared.train_masks.shape[1:] == (32, 32)
    assert set(np.unique(prepared.train_masks)) <= {0, 1}
    result = train(config, images, masks)
    model = load_model(result.model_dir)
    assert tuple(model.config.data.resize) == (32, 32)
    # any input size comes back at its own size
    for shape in ((2, 40, 56), (1, 70, 30)):
        stack = synthetic_em(slices=shape[0], size=shape[1:], cells=6, seed=1)[0]
        prediction = predict(model, stack)
        assert prediction.probability.shape == shape
        assert prediction.probability.dtype == np.float32
        assert 0.0 <= prediction.probability.min() <= prediction.probability.max() <= 1.0
    single = predict(model, images[0]).probability
    assert single.shape == (1, 40, 56)
    # from the command line too
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, images, photometric="minisblack")
    out = tmp_path / "mask.tif"
    assert main(["predict", str(result.model_dir), str(src), "-o", str(out), "--quiet"]) == 0
    assert tifffile.imread(out).shape == (3, 40, 56)
