"""Efficient student architectures for knowledge distillation: depthwise-separable blocks with a width
multiplier (`ds_cnn`, after the DS-CNN of Zhang et al., "Hello Edge", 2017) and a MobileNet-style net
(`mobilenet`, the MobileNet v1 body of Howard et al., 2017). Built in tf_keras for the model's input and
output, randomly initialised (seeded).

Example:
    >>> student = build("ds_cnn", input_shape=(8, 8, 1), outputs=10, width=0.5)  # doctest: +SKIP

Gotchas: they take images (height, width, channels) or sequences (steps, features); spatial strides stop
at 2x2 so small inputs (8x8 digits) keep a feature map.
"""

from __future__ import annotations

from ..converter.keras_io import tf_keras
from ..errors import ConversionError

# (output channels at width 1.0, stride) per depthwise-separable block.
DS_CNN_BLOCKS = [(64, 1), (128, 2), (128, 1), (128, 1)]
MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def build(name, input_shape, outputs, width=1.0, probabilities=False, seed=0):
    """A fresh student `name` for inputs of `input_shape` (without batch) and `outputs` classes or values."""
    keras = tf_keras()
    if name not in STUDENTS:
        raise ConversionError(f"unknown student {name!r} (valid: self, {', '.join(STUDENTS)})")
    if len(input_shape) not in (2, 3) or any(d is None for d in input_shape):
        raise ConversionError(
            f"student {name!r} takes images (height, width, channels) or sequences (steps, features) of a fixed "
            f"size; this model's input is {tuple(input_shape)}: use student: self")
    keras.utils.set_random_seed(seed)
    stem, blocks = STUDENTS[name]
    return _build(name, tuple(input_shape), outputs, width, probabilities, stem, blocks)


def _build(name, input_shape, outputs, width, probabilities, stem_channels, blocks):
    keras = tf_keras()
    layers = keras.layers
    two_d = len(input_shape) == 3
    conv, depthwise = (layers.Conv2D, layers.DepthwiseConv2D) if two_d else (layers.Conv1D, layers.DepthwiseConv1D)
    pool = layers.GlobalAveragePooling2D if two_d else layers.GlobalAveragePooling1D
    inputs = keras.Input(input_shape, name="input")
    size = min(input_shape[:2]) if two_d else input_shape[0]
    x = _unit(conv(_channels(stem_channels, width), 3, padding="same", use_bias=False, name="stem"), inputs, "stem")
    for i, (channels, stride) in enumerate(blocks):
        stride = stride if size // stride >= 2 else 1
        size //= stride
        x = _unit(depthwise(3, strides=stride, padding="same", use_bias=False, name=f"dw{i}"), x, f"dw{i}")
        x = _unit(conv(_channels(channels, width), 1, use_bias=False, name=f"pw{i}"), x, f"pw{i}")
    x = pool(name="pool")(x)
    out = layers.Dense(outputs, activation="softmax" if probabilities else None, name="logits")(x)
    return keras.Model(inputs, out, name=f"{name}_w{round(width * 100)}")


def _unit(layer, x, name):
    layers = tf_keras().layers
    # momentum 0.9, not Keras' 0.99: a student trains for a few hundred steps, and the moving statistics
    # inference uses must settle within them.
    normalised = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(layer(x))
    return layers.ReLU(6.0, name=f"{name}_relu")(normalised)


def _channels(channels, width):
    # Multiples of 8 keep SIMD lanes full, as MobileNet's width multiplier does.
    return max(8, int(channels * width + 4) // 8 * 8)


STUDENTS = {"ds_cnn": (64, DS_CNN_BLOCKS), "mobilenet": (32, MOBILENET_BLOCKS)}
