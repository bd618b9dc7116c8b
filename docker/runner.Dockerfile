# The benchmark runner, for linux/amd64 and linux/arm64 (ARM servers, boards with Docker): no TensorFlow.
# Build from the repository root:
#   docker buildx build --platform linux/amd64,linux/arm64 -f docker/runner.Dockerfile -t edgeopt-runner .
# Run a benchmark bundle (plan.json, models, inputs, device/) mounted at /bundle:
#   docker run --rm -v "$PWD/bundle:/bundle" edgeopt-runner python /bundle/device/runner.py /bundle/plan.json
# BASE: any Debian-based image with Python >= 3.11 and its venv module (default: the official image).
# Where no registry is reachable, build one from Debian packages (see tests/docker_engine.py).
ARG BASE=python:3.11.11-slim-bookworm
FROM ${BASE}

LABEL org.opencontainers.image.title="edgeopt-runner" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="edgeopt benchmark runner: LiteRT and onnxruntime, no TensorFlow"

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/edgeopt/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeopt ./edgeopt
# A virtual environment: Debian's own Python refuses system-wide installs (PEP 668).
# The base install is the TensorFlow-free side: numpy, onnxruntime, ai-edge-litert (wheels for both arches).
RUN python3 -m venv /opt/edgeopt && pip install . && rm -rf /src
WORKDIR /work
CMD ["edgeopt", "target", "check", "local"]
