"""The fine-tuning recipe every training step shares: schedules, optimizers, early stopping, BatchNorm
freezing, L2, seed, mixed precision, progress lines; on a tiny Dense model that trains in a second."""

import numpy as np
import pytest

from edgeopt import data
from edgeopt.steps.objective import build_objective
from edgeopt.steps.training import FineTuner, FineTuneSpec, cpu_has_bfloat16


def tiny_model(seed=0):
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="fc"),
                             keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(3, name="out")], name="tiny")


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    return data.Dataset([x], np.argmax(x[:, :3], axis=1).astype(np.int64), "toy")


def tune(model, train, log=lambda *_: None, **options):
    spec = FineTuneSpec(**options)
    tuner = FineTuner(spec, lambda m, t: build_objective(m, t, spec), seed=0, progress=True, log=log, name="tune")
    return tuner(model, train)


def lr_at(schedule, step):
    return float(schedule(step)) if callable(schedule) else float(schedule)


@pytest.mark.parametrize("options,expected", [
    ({"lr_schedule": "constant"}, {0: 1e-3, 39: 1e-3}),
    ({"lr_schedule": "cosine"}, {0: 1e-3, 20: 5e-4, 39: 1.5e-6}),
    ({"lr_schedule": "step", "step_epochs": 2, "step_factor": 0.1}, {19: 1e-3, 20: 1e-4, 39: 1e-4}),
    ({"lr_schedule": "cosine", "warmup_epochs": 1}, {0: 1e-4, 9: 1e-3, 10: 1e-3, 25: 5e-4, 39: 2.7e-6}),
    ({"lr_schedule": "constant", "warmup_epochs": 2}, {4: 2.5e-4, 19: 1e-3, 30: 1e-3}),
])
def test_learning_rate_schedules_follow_their_shape(options, expected):
    from edgeopt.steps.keras_training import learning_rate

    schedule = learning_rate(FineTuneSpec(epochs=4, **options), steps_per_epoch=10, epochs=4)
    for step, want in expected.items():
        assert lr_at(schedule, step) == pytest.approx(want, rel=0.05, abs=1e-6), step


@pytest.mark.parametrize("options,check", [
    ({"optimizer": "adamw"}, lambda o: type(o).__name__ == "AdamW" and o.weight_decay == pytest.approx(0.004)),
    ({"optimizer": "adamw", "weight_decay": 0.05}, lambda o: o.weight_decay == pytest.approx(0.05)),
    ({"optimizer": "sgd", "momentum": 0.8}, lambda o: type(o).__name__ == "SGD" and o.momentum == pytest.approx(0.8)),
    ({"optimizer": "adam", "clip_norm": 1.5}, lambda o: type(o).__name__ == "Adam" and o.clipnorm == 1.5),
])
def test_optimizers_carry_decay_momentum_and_clipping(options, check):
    from edgeopt.steps.keras_training import optimizer

    assert check(optimizer(FineTuneSpec(**options), 1e-3))


def test_early_stopping_stops_when_the_validation_loss_stalls_and_waits_for_settle(toy):
    # A learning rate this small (and BatchNorm frozen) leaves the validation loss exactly where it was.
    stalled = {"learning_rate": 1e-12, "lr_schedule": "constant", "validation_split": 0.25, "patience": 2,
               "epochs": 20, "batchnorm": "freeze"}
    record = tune(tiny_model(), toy, **stalled)
    assert record["epochs_run"] == 3 and record["best_epoch"] == 1
    assert record["validation_samples"] == 64 and record["fit_samples"] == 192
    spec = FineTuneSpec(**stalled)
    tuner = FineTuner(spec, lambda m, t: build_objective(m, t, spec), seed=0, progress=False, log=lambda *_: None)
    assert tuner(tiny_model(), toy, settle_epochs=5)["epochs_run"] == 8


@pytest.mark.parametrize("mode,changes", [("freeze", False), ("train", True)])
def test_batchnorm_statistics_stay_fixed_only_when_frozen(toy, mode, changes):
    model = tiny_model()
    before = model.get_layer("bn").moving_mean.numpy().copy()
    tune(model, toy, epochs=2, batchnorm=mode)
    assert (not np.allclose(model.get_layer("bn").moving_mean.numpy(), before)) == changes
    assert model.get_layer("bn").trainable  # unfrozen afterwards, so the model saves and exports as usual


def test_l2_penalty_shrinks_the_kernels(toy):
    norms = {}
    for l2 in (0.0, 1.0):
        model = tiny_model()
        tune(model, toy, epochs=5, l2=l2, learning_rate=0.02, lr_schedule="constant")
        norms[l2] = sum(float(np.sum(np.square(model.get_layer(n).kernel.numpy()))) for n in ("fc", "out"))
    assert norms[1.0] < 0.5 * norms[0.0]


def test_the_same_seed_gives_the_same_weights(toy):
    weights = []
    for _ in range(2):
        model = tiny_model()
        tune(model, toy, epochs=2)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_progress_without_a_terminal_is_one_plain_line_per_epoch(toy):
    lines = []
    tune(tiny_model(), toy, log=lines.append, epochs=3)
    assert [line.split(":")[0] for line in lines] == ["tune epoch 1/3", "tune epoch 2/3", "tune epoch 3/3"]
    assert all("loss " in line and "accuracy " in line for line in lines)


@pytest.mark.skipif(not cpu_has_bfloat16(), reason="this CPU has no bfloat16 instructions")
def test_mixed_precision_trains_in_bfloat16_and_gives_back_float32(toy):
    from edgeopt.steps.precision import MIXED, with_policy

    mixed = with_policy(tiny_model(), MIXED)
    assert mixed.get_layer("fc").compute_dtype == "bfloat16" and mixed.get_layer("out").compute_dtype == "float32"
    record = tune(mixed, toy, epochs=1)
    assert record["mixed_precision"] is True
    back = with_policy(mixed, "float32")
    assert all(layer.compute_dtype == "float32" for layer in back.layers)
    x = toy.x[0][:32]
    np.testing.assert_allclose(back.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=0.05)


@pytest.mark.parametrize("options,message", [
    ({"patience": 2}, "patience needs a validation_split"),
    ({"warmup_epochs": 4, "epochs": 4}, r"warmup_epochs \(4\) must be shorter than epochs \(4\)"),
    ({"step_epochs": 3}, "step_epochs applies to lr_schedule: step only"),
    ({"momentum": 0.5}, "momentum applies to optimizer: sgd only"),
    ({"teacher": "none", "temperature": 2.0}, "alpha and temperature weigh a distillation loss, but teacher is none"),
])
def test_contradicting_fine_tuning_options_are_named(options, message):
    import re

    assert any(re.search(message, p) for p in FineTuneSpec(**options).problems())
