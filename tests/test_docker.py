"""The Dockerfiles, checked without Docker: what they copy exists, what they pin agrees with pyproject."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILES = {"runner": ROOT / "docker" / "runner.Dockerfile", "converter": ROOT / "docker" / "converter.Dockerfile"}


def instructions(path):
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_every_copied_path_exists_and_survives_dockerignore(image):
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    copies = [args.split()[:-1] for op, args in instructions(DOCKERFILES[image]) if op == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_base_image_is_a_build_argument_defaulting_to_a_pinned_python_that_pyproject_allows(image):
    steps = instructions(DOCKERFILES[image])
    (base,) = [args for op, args in steps if op == "FROM"]
    assert base.endswith("${BASE}"), f"FROM {base}: the base image must be the build argument BASE"
    (default,) = [args.split("=", 1)[1] for op, args in steps if op == "ARG" and args.startswith("BASE=")]
    assert steps.index(("ARG", f"BASE={default}")) < steps.index(("FROM", base))
    match = re.search(r"^python:(\d+)\.(\d+)\.(\d+)-slim-bookworm$", default)
    assert match, f"{default}: pin the exact patch release and the Debian release"
    minimum = re.match(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups()
    assert tuple(map(int, match.groups()[:2])) >= tuple(map(int, minimum))


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_version_label_is_the_package_version(image):
    labels = " ".join(args for op, args in instructions(DOCKERFILES[image]) if op == "LABEL")
    assert f'org.opencontainers.image.version="{PYPROJECT["project"]["version"]}"' in labels


def test_runner_installs_the_tensorflow_free_base_and_converter_the_convert_extra():
    runs = {image: " ".join(args for op, args in instructions(path) if op == "RUN") for image, path in DOCKERFILES.items()}
    assert re.search(r"pip install \.(\s|$)", runs["runner"])
    assert 'pip install ".[convert]"' in runs["converter"]
    assert not any("tensorflow" in dep for dep in PYPROJECT["project"]["dependencies"])
    assert not any("tensorflow" in args.lower() for op, args in instructions(DOCKERFILES["runner"]) if op != "LABEL")


def test_converter_is_x86_64_only_and_readme_documents_both_builds():
    (base,) = [args for op, args in instructions(DOCKERFILES["converter"]) if op == "FROM"]
    assert base == "--platform=linux/amd64 ${BASE}"
    readme = (ROOT / "README.md").read_text()
    assert "docker buildx build --platform linux/amd64,linux/arm64 -f docker/runner.Dockerfile" in readme
    assert "docker buildx build --platform linux/amd64 -f docker/converter.Dockerfile" in readme
