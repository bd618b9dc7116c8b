# The benchmark runner, for linux/amd64 and linux/arm64 (ARM servers, boards with Docker): no TensorFlow.
# Build from the repository root:
#   docker buildx build --platform linux/amd64,linux/arm64 -f docker/runner.Dockerfile -t edgeopt-runner .
# Run a benchmark bundle (plan.json, models, inputs, device/) mounted at /bundle:
#   docker run --rm -v "$PWD/bundle:/bundle" edgeopt-runner python /bundle/device/runner.py /bundle/plan.json
FROM python:3.11.11-slim-bookworm

LABEL org.opencontainers.image.title="edgeopt-runner" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="edgeopt benchmark runner: LiteRT and onnxruntime, no TensorFlow"

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgeopt ./edgeopt
# The base install is the TensorFlow-free side: numpy, onnxruntime, ai-edge-litert (wheels for both arches).
RUN pip install . && rm -rf /src
WORKDIR /work
CMD ["edgeopt", "target", "check", "local"]
