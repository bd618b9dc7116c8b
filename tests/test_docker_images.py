"""Both images, really built and run: the converter converts a Keras file, the runner benchmarks the result.

Needs a Docker engine (started here when it is installed and we are root) and a Python base image (the
official one, else one built from Debian packages: tests/docker_engine.py). Where this machine cannot,
the tests skip and say why. What was started and built here is stopped and removed afterwards.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .docker_engine import DockerEngine, Unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {"runner": "edgeopt-test-runner:latest", "converter": "edgeopt-test-converter:latest"}


@pytest.fixture(scope="module")
def images():
    """{image: tag} after building both from this checkout; the build seconds are printed."""
    engine = DockerEngine()
    try:
        engine.start()
        base, built_base = engine.base_image()
    except Unavailable as e:
        engine.stop()
        pytest.skip(f"the image tests need Docker: {e}")
    built = [base] if built_base else []
    try:
        for name, tag in IMAGES.items():
            t0 = time.time()
            proc = subprocess.run(
                ["docker", "build", "--network", "host", "--build-arg", f"BASE={base}",
                 "-f", f"docker/{name}.Dockerfile", "-t", tag, "."],
                cwd=ROOT, capture_output=True, text=True, timeout=1500)
            assert proc.returncode == 0, f"{name} image did not build:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            built.append(tag)
            size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag],
                                  capture_output=True, text=True).stdout.strip()
            print(f"{name} image built in {time.time() - t0:.0f}s from {base}: {int(size) / 1e6:.0f} MB", flush=True)
        yield IMAGES
    finally:
        for tag in reversed(built):
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        engine.stop()


def run(image, *args, volume=None, network="none"):
    """`docker run` as the calling user, so files written into `volume` are ours to clean up."""
    argv = ["docker", "run", "--rm", "--network", network, "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    if volume:
        argv += ["-v", f"{volume}:/work"]
    return subprocess.run([*argv, image, *args], capture_output=True, text=True, timeout=900)


def test_runner_image_has_the_runtimes_and_no_tensorflow(images):
    check = run(images["runner"])  # its default command: edgeopt target check local
    assert check.returncode == 0, check.stderr
    assert "ready: it can run the benchmark" in check.stdout
    assert "onnxruntime     1.32" in check.stdout and "ai-edge-litert  2.3" in check.stdout
    probe = run(images["runner"], "python", "-c", "import importlib.util as u; print(u.find_spec('tensorflow'))")
    assert probe.stdout.strip() == "None", probe.stderr


def test_converter_image_converts_and_runner_image_benchmarks_the_files(images, model_h5, tmp_path):
    shutil.copy(model_h5, tmp_path / "model.h5")
    converted = run(images["converter"], "convert", "model.h5", "--formats", "tflite,onnx",
                    "--precisions", "fp32,int8", "--calibration", "digits", "--evaluation", "digits",
                    "--out", "out", "--quiet", volume=tmp_path)
    assert converted.returncode == 0, converted.stdout[-2000:] + converted.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(a["id"] for a in manifest["artifacts"] if a["status"] == "ok") == [
        "model.fp32.onnx", "model.fp32.tflite", "model.int8.onnx", "model.int8.tflite"]

    bench = run(images["runner"], "edgeopt", "bench", "out", "--threads", "1", "--rounds", "1",
                "--min-seconds", "0.1", "--quiet", volume=tmp_path)
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["rows"]) == 4 and all(r["status"] == "ok" for r in report["rows"])
    assert all(r["accuracy"]["value"] > 0.8 for r in report["rows"])
