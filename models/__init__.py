"""Reference models for the benchmark suite: builders and the digits shaped for each (see README.md)."""

from .builders import digits_conv1d, digits_mlp, mobilenet_v2, mobilenet_v2_digits, normalise_batchnorm
from .digits import digits_as
from edgeopt.steps.students import build as student

__all__ = ["digits_conv1d", "digits_mlp", "digits_as", "mobilenet_v2", "mobilenet_v2_digits", "normalise_batchnorm", "student"]
