"""edgeopt: a trained Keras model in, validated on-device models out, with measurements.

The public API lives here so internal modules can move. Converter entry points import TensorFlow
only when called, so `import edgeopt` stays TensorFlow-free for the benchmark side.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: F401
    BenchmarkError,
    ConversionError,
    DataError,
    EdgeoptError,
    ModelLoadError,
    OutputError,
    RecipeError,
    TargetError,
)
from .manifest import Artifact, Manifest  # noqa: F401


def convert(*args, **kwargs):
    """See edgeopt.pipeline.convert."""
    from .pipeline import convert as _convert

    return _convert(*args, **kwargs)


convert.__doc__ = "Run the converter; see edgeopt.pipeline.convert for the arguments."


def survey(*args, **kwargs):
    """Convert every model in a folder, one row each; see edgeopt.corpus.survey for the arguments."""
    from .corpus import survey as _survey

    return _survey(*args, **kwargs)


def verify(*args, **kwargs):
    """Check an output folder against its records (repair=True fixes what a kill left).

    See edgeopt.verification.verify for the arguments and what is checked.
    """
    from .verification import verify as _verify

    return _verify(*args, **kwargs)


def prune_channels(*args, **kwargs):
    """Remove whole channels (a smaller, faster dense model); see edgeopt.steps.channels.prune_channels."""
    from .steps.channels import prune_channels as _prune_channels

    return _prune_channels(*args, **kwargs)


def benchmark(*args, **kwargs):
    """Measure every artifact; see edgeopt.bench.harness.benchmark for the arguments."""
    from .bench.harness import benchmark as _benchmark

    return _benchmark(*args, **kwargs)


from .bench.report import Report, Row  # noqa: E402,F401
from .recipe import Recipe, load_recipe  # noqa: E402,F401
