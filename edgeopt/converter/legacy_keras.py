"""Keras 1 files: recognised from the file before any loader runs, refused with the cause and what to do.

Keras 1 (2015-2017) wrote a model config that neither tf_keras (Keras 2) nor Keras 3 reads: Keras 1
argument names (`output_dim`, `nb_filter`, `init`, `W_regularizer`, `border_mode`, ...) and Lambda
functions marshalled by the Python of the day. Both loaders fail on such a file with errors that say
nothing of this (`EOFError: EOF read where object expected`, `TypeError: pop expected at most 1
argument, got 2`), so the file is recognised here from its saved `keras_version` or its arguments.
"""

from __future__ import annotations

from ..errors import ModelLoadError
from .model_code import THIS_PYTHON, layer_configs, scan

# Layer arguments that exist only in Keras 1's API (renamed by Keras 2); generic names such as `init`
# are left out, since a custom layer of any version may take them.
_KERAS1_ARGUMENTS = {"output_dim", "input_dtype", "nb_filter", "nb_row", "nb_col", "W_regularizer", "b_regularizer",
                     "W_constraint", "b_constraint", "border_mode", "dim_ordering", "consume_less"}


def refuse_keras1(path, keras_version, config):
    """Raise ModelLoadError naming why a Keras 1 file cannot load and what the user can do; else return."""
    evidence = _evidence(keras_version, config)
    if not evidence:
        return
    lambdas = [c for c in scan(config, lambda cls: True) if c.class_name == "Lambda"]
    foreign = [c for c in lambdas if c.bytecode_origin]
    message = (
        f"{str(path)!r} is a Keras 1 model ({evidence}): its model config uses Keras 1's layer arguments, which "
        "neither tf_keras (Keras 2) nor Keras 3 can read, so no loader here can open it"
    )
    if foreign:
        names = ", ".join(repr(c.layer) for c in foreign)
        message += (f". Its Lambda layer(s) {names} also hold Python bytecode marshalled by "
                    f"{foreign[0].bytecode_origin}, which Python {THIS_PYTHON} cannot read even with --trust-model-code")
    message += (
        ". What you can do: rebuild the architecture in current Keras code (Keras 1's Dense(output_dim) is "
        "Dense(units), Convolution2D(nb_filter, nb_row, nb_col) is Conv2D(filters, (rows, cols)), init= is "
        "kernel_initializer=)"
        + (", writing each Lambda's function again in code" if lambdas else "")
        + ", copy the weights from this file's 'model_weights' group layer by layer with layer.set_weights() "
        "(kernels saved with dim_ordering 'th' must be transposed), check the outputs against the old model, and "
        "save it with model.save('model.keras')"
    )
    raise ModelLoadError(message)


def _evidence(keras_version, config) -> str | None:
    if keras_version:
        return f"saved by Keras {keras_version}" if str(keras_version).startswith("1.") else None
    used = sorted({arg for layer in layer_configs(config) for arg in (layer.get("config") or {})} & _KERAS1_ARGUMENTS)
    if used:
        return f"its layers use Keras 1 arguments: {', '.join(used[:5])}"
    return None
