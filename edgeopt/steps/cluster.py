"""Weight clustering with tensorflow-model-optimization (`cluster_weights`): each kernel keeps at most
`clusters` distinct values, so it compresses well; sparsity from an earlier prune step can be preserved.

Gotchas: clustering shrinks the *compressed* file (gzip), not the raw .tflite, whose weights stay int8 or
float; layers with no more weights than clusters are left as they are (tfmot's rule for Conv2D, applied to
every layer).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import ConversionError
from .selection import LayerSelection, selected, unknown
from .training import FineTuneSpec

INITIALISATIONS = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}


class ClusterSpec(FineTuneSpec, LayerSelection):
    clusters: int = Field(16, ge=2, le=256, description="distinct values each kernel keeps")
    init: Literal["kmeans++", "linear", "density", "random"] = Field(
        "kmeans++", description="centroid initialisation: kmeans++, linear (evenly spaced), density (by the "
        "weights' distribution) or random")
    preserve_sparsity: bool | Literal["auto"] = Field("auto", description="keep zero weights zero (auto: when a "
                                                      "prune step came before)")
    per_channel: bool = Field(False, description="clusters per output channel of Conv2D kernels")
    learning_rate: float = Field(1e-4, gt=0, le=10, description="peak learning rate (reached after any warm-up)")
    epochs: int = Field(2, ge=1, le=1000, description="passes over the training data")


def resolve(spec, earlier):
    if spec.preserve_sparsity == "auto":
        return spec.model_copy(update={"preserve_sparsity": "prune" in earlier})
    return spec


def model_problems(model, spec, where) -> list[str]:
    return unknown(model, [*(spec.layers or []), *spec.exclude], where)


def tag(spec) -> str:
    return f"clustered{spec.clusters}"


def cluster(model, spec, train, *, seed=0, progress=True, log=print, fine_tune):
    """Fine-tune `model` with clustered kernels; return (stripped tf_keras model, record for the manifest)."""
    import tensorflow_model_optimization as tfmot

    from ..converter.keras_io import tf_keras

    init = getattr(tfmot.clustering.keras.CentroidInitialization, INITIALISATIONS[spec.init])
    plan, too_small = [], []

    def wrap(layer):
        if not selected(layer, spec) or not _clusterable(layer):
            return layer
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and int(np.prod(kernel.shape)) <= spec.clusters:
            # tfmot skips such Conv2D layers itself, but fails inside k-means++ on a Dense one.
            too_small.append(layer.name)
            return layer
        wrapped = tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=spec.clusters, cluster_centroids_init=init,
            preserve_sparsity=bool(spec.preserve_sparsity), cluster_per_channel=spec.per_channel)
        if wrapped is not layer:
            plan.append(layer.name)
        return wrapped

    try:
        wrapped = tf_keras().models.clone_model(model, clone_function=wrap)
    except ValueError as e:
        raise ConversionError(f"tfmot cannot cluster {model.name!r}: {e}") from None
    if not plan:
        raise ConversionError(f"model {model.name!r} has no selected layer tfmot can cluster with {spec.clusters} "
                              "clusters (Dense, Conv, ... with more weights than clusters)")
    log(f"clustering {len(plan)} layer(s) to {spec.clusters} values each ({spec.init} initialisation"
        f"{', zeros kept' if spec.preserve_sparsity else ''})")
    fine_tune(wrapped, train, spec.epochs)
    return tfmot.clustering.keras.strip_clustering(wrapped), {"layers": plan, "fewer_weights_than_clusters": too_small}


def _clusterable(layer) -> bool:
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import ClusteringRegistry

    return ClusteringRegistry.supports(layer) and bool(getattr(layer, "trainable_weights", None))


def verify(spec, record, measured) -> tuple[list, dict]:
    """At most `clusters` distinct values per clustered kernel, or per output channel of a Conv2D kernel with
    per_channel (+1 for the zeros sparsity preservation keeps)."""
    limit = spec.clusters + (1 if spec.preserve_sparsity else 0)
    over = {n: v for n, v in measured["distinct_values"].items() if n in record["layers"] and v > limit}
    problems = [f"layer {n} has {v} distinct kernel values, more than {limit}" for n, v in over.items()]
    return problems, {"max_distinct_values": limit}
