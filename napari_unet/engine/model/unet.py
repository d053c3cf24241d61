"""2D U-Net (Ronneberger et al. 2015) with 'same' padding, in Keras 3.

The output has the input's spatial size and, always in float32 (even under a
mixed-precision policy, so probabilities are exact and losses stable):

* ``binary``: one channel, the sigmoid probability of the mask's nonzero class;
* ``multiclass``: one channel per class of ``model.classes``, softmax probabilities;
* ``regression``: one channel, the linear (unbounded) predicted value.

The input has ``model.in_channels`` channels (1 for grey EM).
TensorFlow/Keras is imported here, so import this module lazily.
"""

from __future__ import annotations

import keras
from keras import layers

from ..config import ModelConfig

__all__ = ["build_unet", "count_flops"]


def _conv_block(x, filters: int, batch_norm: bool, name: str):
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU."""
    for i in (1, 2):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(config: ModelConfig, input_channels: int | None = None) -> keras.Model:
    """Build a U-Net from `config`.

    Parameters
    ----------
    config
        Depth, base filters, batch norm, dropout, task and classes.
    input_channels
        Channels of the input image; default ``config.in_channels`` or 1 (EM).

    Returns
    -------
    keras.Model
        Maps (B, H, W, C) to (B, H, W, K): sigmoid probabilities (K = 1), softmax
        class probabilities (K classes) or linear values (K = 1), per ``config.task``;
        H and W must be multiples of ``2**config.depth``.
    """
    input_channels = input_channels or config.in_channels or 1
    inputs = keras.Input(shape=(None, None, input_channels), name="image")
    x = inputs
    skips = []
    for level in range(config.depth):
        x = _conv_block(x, config.base_filters * 2**level, config.batch_norm, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, config.base_filters * 2**config.depth, config.batch_norm, "bottom")
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="bottom_dropout")(x)
    for level in reversed(range(config.depth)):
        filters = config.base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, filters, config.batch_norm, f"dec{level}")
    task = getattr(config, "task", "binary")
    logits = layers.Conv2D(config.out_channels, 1, dtype="float32", name="logits")(x)
    activation = {"binary": "sigmoid", "multiclass": "softmax"}.get(task, "linear")
    outputs = layers.Activation(activation, dtype="float32", name="probability")(logits)
    return keras.Model(inputs, outputs, name="unet")


def count_flops(model: keras.Model, height: int, width: int) -> int:
    """Forward-pass FLOPs (2 x multiply-adds) of the convolutions for one image.

    Only convolution and transposed-convolution layers are counted: they are
    more than 99% of the arithmetic. Training costs about 3x the forward pass.
    """
    total = 0
    shapes = _spatial_shapes(model, height, width)
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            kh, kw, cin, cout = layer.kernel.shape
            out_h, out_w = shapes[layer.name]
            if isinstance(layer, layers.Conv2DTranspose):
                in_h, in_w = out_h // layer.strides[0], out_w // layer.strides[1]
                total += 2 * in_h * in_w * kh * kw * cin * cout
            else:
                total += 2 * out_h * out_w * kh * kw * cin * cout
    return int(total)


def _spatial_shapes(model: keras.Model, height: int, width: int) -> dict[str, tuple[int, int]]:
    """Output (H, W) of each layer for an input of (height, width)."""
    scale: dict[str, float] = {}
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, layers.InputLayer):
            scale[name] = 1.0
            continue
        inbound = layer._inbound_nodes[0].input_tensors
        parent = inbound[0]._keras_history.operation.name
        factor = scale[parent]
        if isinstance(layer, layers.MaxPooling2D):
            factor /= 2
        elif isinstance(layer, layers.Conv2DTranspose):
            factor *= 2
        scale[name] = factor
    return {k: (int(height * v), int(width * v)) for k, v in scale.items()}
