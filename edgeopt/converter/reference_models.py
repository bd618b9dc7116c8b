"""Small reference models the demo, tests and benchmarks build and train in seconds (offline)."""

from .keras_io import tf_keras


def digits_cnn(name="digits_cnn"):
    """A two-conv CNN for 8x8x1 digits with logits out: ~20k parameters, trains to ~97% in seconds."""
    keras = tf_keras()
    return keras.Sequential(
        [
            keras.layers.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation="relu", name="fc"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


def train_classifier(model, dataset, epochs=15, batch_size=32, learning_rate=2e-3, seed=0, progress=True):
    """Compile for integer labels and logits, fit with a progress bar, return the model."""
    from .progress import keras_progress

    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(dataset.x[0], dataset.y, epochs=epochs, batch_size=batch_size, verbose=0,
              callbacks=[keras_progress("training", progress)])
    return model
