"""benchmarks/search.py's plan: which searches a model gets on which targets, with which settings."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("search_benchmark", ROOT / "benchmarks" / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_model_with_target_overrides_gets_one_search_per_target_into_its_own_results_folder():
    script = load_script()
    [local, emulated] = script.searches("mobilenet_v2", ["local", "aarch64-emulated"], Path("r"))
    assert (local[0], local[2]) == (["local"], Path("r/local"))
    assert (emulated[0], emulated[2]) == (["aarch64-emulated"], Path("r/aarch64-emulated"))
    assert emulated[1]["samples"] < local[1].get("samples", 1000)  # QEMU's part is kept affordable
    assert "per_target" not in local[1] and "per_target" not in emulated[1]


def test_a_model_without_overrides_searches_every_target_in_one_study():
    script = load_script()
    [(targets, settings, results)] = script.searches("digits_cnn", ["local", "aarch64-emulated"], Path("r"))
    assert targets == ["local", "aarch64-emulated"] and results == Path("r")
    assert settings == script.SETTINGS["digits_cnn"]


def test_every_searched_model_is_a_reference_or_a_trained_model():
    script = load_script()
    assert set(script.SETTINGS) <= set(script.MODELS)
    assert "mobilenet_v2_digits" in script.TRAINED and "mobilenet_v2_digits" not in script.SUITE  # run.py keeps its set


def test_upscaled_digits_repeat_each_pixel_into_a_block_of_an_rgb_image_in_minus_one_to_one():
    import numpy as np

    import edgeopt  # noqa: F401  (before models: TensorFlow must see tf_keras)
    from edgeopt import data
    from models import digits_as

    small, big = data.digits("evaluation"), digits_as("rgb224", "evaluation")
    assert big.x[0].shape == (len(small), 224, 224, 3) and big.x[0].dtype == np.float32
    assert (big.y == small.y).all()
    blocks = big.x[0][:, ::28, ::28, :]  # the top-left corner of each 28x28 block
    assert np.array_equal(blocks, np.repeat(small.x[0] * 2 - 1, 3, axis=-1))
    assert np.array_equal(big.x[0][:, 27::28, 27::28, :], blocks)  # and its bottom-right corner
    assert big.x[0].min() >= -1.0 and big.x[0].max() <= 1.0
