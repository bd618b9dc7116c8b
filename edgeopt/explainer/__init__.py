"""Why a file lost accuracy or speed: per-layer error, per-operator time, verdicts (see run.explain).

TensorFlow-free, except where TFLite's quantization debugger runs (in a child process).
"""
