"""Builders for the reference models that edgeopt itself does not ship (the digits CNN lives in
edgeopt.converter.reference_models). Every model is a tf_keras model with logits out.

Gotchas: call `keras.utils.set_random_seed` first for reproducible weights; nothing is downloaded.
"""

import numpy as np

from edgeopt.converter.keras_io import tf_keras


def digits_mlp(name="digits_mlp"):
    """A dense MLP on the 64 pixels of a flattened digit: ~17k parameters, trains to ~96% in seconds."""
    keras = tf_keras()
    return keras.Sequential(
        [
            keras.layers.Input((64,), name="pixels"),
            keras.layers.Dense(128, activation="relu", name="fc1"),
            keras.layers.Dense(64, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


def digits_conv1d(name="digits_conv1d"):
    """A sequence model: Conv1D over a digit's 8 rows as 8 timesteps of 8 features (~12k parameters).

    Conv1D rather than an LSTM: it converts to every format and precision without special handling.
    """
    keras = tf_keras()
    return keras.Sequential(
        [
            keras.layers.Input((8, 8), name="rows"),
            keras.layers.Conv1D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv1D(64, 3, activation="relu", name="conv2"),
            keras.layers.GlobalMaxPooling1D(name="pool"),
            keras.layers.Dense(64, activation="relu", name="fc"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


def mobilenet_v2(seed=0):
    """MobileNetV2 (alpha 1.0) at 224x224x3 with 1000 logits, randomly initialised: never trained.

    Its latency and size are those of the real network; its accuracy means nothing (no weights are
    downloaded), so int8 files are judged only on agreement with this same random model.

    Gotchas: with default initial BatchNorm statistics, a random MobileNetV2's activations shrink
    layer by layer to logits of ~1e-11, which int8 output rounds to all zeros; the statistics are
    therefore set from the network's own activations on uniform noise (see `normalise_batchnorm`).
    """
    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classifier_activation=None)
    noise = np.random.default_rng(seed).uniform(-1.0, 1.0, (8, 224, 224, 3)).astype(np.float32)
    return normalise_batchnorm(model, noise)


def mobilenet_v2_digits(seed=0):
    """MobileNetV2 (alpha 1.0) at 224x224x3 with 10 logits, for training on upscaled digits.

    The real network's layers, work and latency, with weights that mean something: int8 error on a trained
    network is what a user meets, while a random one's logits lie so close that any rounding reorders them.
    Train it with `models.digits_as("rgb224", "train")` (see benchmarks/suite_models.py).
    """
    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classes=10,
                                           classifier_activation=None)
    for layer in model.layers:
        # Keras' MobileNetV2 averages BatchNorm statistics with momentum 0.999, made for ImageNet's millions of
        # steps: after the few hundred steps of a digits training its moving statistics would still be the
        # initial ones, and inference would score at chance.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def normalise_batchnorm(model, x):
    """Set each BatchNormalization's moving mean and variance to its input's on `x`, first layer first.

    A data-dependent initialisation (no gradient step): every normalised activation gets zero mean and
    unit variance on `x`, so a random network's outputs keep a usable scale.
    """
    keras = tf_keras()
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [layer.input for layer in layers])
    for i, layer in enumerate(layers):  # in order: each layer's input depends on the statistics set before it
        h = probe(x, training=False)[i].numpy()
        axes = tuple(range(h.ndim - 1))
        layer.moving_mean.assign(h.mean(axes))
        layer.moving_variance.assign(h.var(axes))
    return model
