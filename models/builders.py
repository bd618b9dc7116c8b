"""Builders for the reference models that edgeopt itself does not ship (the digits CNN lives in
edgeopt.converter.reference_models). Every model is a tf_keras model with logits out.

Gotchas: call `keras.utils.set_random_seed` first for reproducible weights; nothing is downloaded.
"""

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
    """
    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), weights=None, classifier_activation=None
    )
