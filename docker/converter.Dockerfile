# The converter (TensorFlow, tfmot, tf2onnx), for linux/amd64 only: TensorFlow publishes no Linux arm64
# wheels that this pin set installs, and converting is done once, on a workstation or in CI.
# Build from the repository root:
#   docker buildx build --platform linux/amd64 -f docker/converter.Dockerfile -t edgeopt-converter .
# Convert (files in the current folder):
#   docker run --rm -v "$PWD:/work" edgeopt-converter convert model.h5 --precisions fp32,int8 --calibration calib.npz --out out
# BASE: any Debian-based x86-64 image with Python >= 3.11 and its venv module (default: the official image).
ARG BASE=python:3.11.11-slim-bookworm
FROM --platform=linux/amd64 ${BASE}

LABEL org.opencontainers.image.title="edgeopt-converter" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="edgeopt converter: Keras to pruned, int8, TFLite and ONNX models"

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/edgeopt/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeopt ./edgeopt
# A virtual environment: Debian's own Python refuses system-wide installs (PEP 668).
RUN python3 -m venv /opt/edgeopt && pip install ".[convert]" && rm -rf /src
WORKDIR /work
ENTRYPOINT ["edgeopt"]
CMD ["--help"]
