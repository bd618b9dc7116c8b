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
