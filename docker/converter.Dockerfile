# The converter (TensorFlow, tfmot, tf2onnx), for linux/amd64 only: TensorFlow publishes no Linux arm64
# wheels that this pin set installs, and converting is done once, on a workstation or in CI.
# Build from the repository root:
#   docker buildx build --platform linux/amd64 -f docker/converter.Dockerfile -t edgeopt-converter .
# Convert (files in the current folder):
#   docker run --rm -v "$PWD:/work" edgeopt-converter convert model.h5 --precisions fp32,int8 --calibration calib.npz --out out
FROM --platform=linux/amd64 python:3.11.11-slim-bookworm

LABEL org.opencontainers.image.title="edgeopt-converter" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="edgeopt converter: Keras to pruned, int8, TFLite and ONNX models"

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeopt ./edgeopt
RUN pip install ".[convert]" && rm -rf /src
WORKDIR /work
ENTRYPOINT ["edgeopt"]
CMD ["--help"]
