"""The optimization steps a recipe can list under `optimize:`, declared once; read everywhere.

Recipe validation, `edgeopt steps`, the README's tables and the test matrix (tests/test_steps.py
fails when a declared step has no test) all read `STEPS`. A step is a plain function

    run(model, spec, train, *, seed, progress, log, fine_tune) -> (optimized tf_keras model, record dict)

plus this declaration. `fine_tune(model, train, epochs=None, *, callbacks=(), settle_epochs=0)` is the
shared fine-tuning recipe (training.py) bound to the step's options and objective (labels, a teacher, or
both). Step modules import TensorFlow inside their functions, so reading this table stays TensorFlow-free.

Registering a step is one declaration (and a test, see tests/test_steps.py); a technique written to its
own interface gets a small adapter, as structured channel pruning does (channels.py, channel_step.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel

from . import channel_step, cluster, distill, prune, qat
from .training import FineTuneSpec


@dataclass(frozen=True)
class Step:
    name: str
    spec: type[BaseModel]  # the options, with defaults and descriptions (pydantic)
    run: Callable
    tool: str  # what does the work
    summary: str
    tag: Callable  # spec -> the part of file names this step adds, e.g. 'pruned50'
    trains: bool = True  # fine-tunes: needs training data (labels unless it distils)
    quantizes: bool = False  # its model carries learned int8 ranges: exports use them instead of calibration
    last: bool = False  # nothing can train after it
    file_suffix: str = ".keras"  # how its model is saved (tfmot's QAT wrappers load back only from HDF5)
    replaces_model: Callable | None = None  # spec -> True when it builds a new model (earlier steps are lost)
    restore: Callable | None = None  # (parent model, spec, saved path) -> the saved model, when it cannot load alone
    resolve: Callable | None = None  # (spec, earlier step names) -> spec with its 'auto' options made explicit
    model_problems: Callable | None = None  # (model, spec, where) -> problems found before any work
    verify: Callable | None = None  # (spec, record, measured) -> (problems with the result, tolerances)

    def own_options(self) -> dict:
        """The step's own options (name -> pydantic field), without the shared fine-tuning ones it inherits."""
        shared = set(FineTuneSpec.model_fields) if issubclass(self.spec, FineTuneSpec) else set()
        return {k: f for k, f in self.spec.model_fields.items() if k not in shared}

    def changed_defaults(self) -> dict:
        """Shared fine-tuning options whose default this step changes (e.g. QAT's lower learning rate)."""
        if not issubclass(self.spec, FineTuneSpec):
            return {}
        return {k: f.default for k, f in self.spec.model_fields.items()
                if k in FineTuneSpec.model_fields and f.default != FineTuneSpec.model_fields[k].default}


STEPS = {s.name: s for s in [
    Step("prune", prune.PruneSpec, prune.prune, tool="tfmot prune_low_magnitude",
         summary="magnitude pruning to a target sparsity (element-wise, M:N or blocks; per layer)",
         tag=prune.tag, model_problems=prune.model_problems, verify=prune.verify),
    Step("cluster", cluster.ClusterSpec, cluster.cluster, tool="tfmot cluster_weights",
         summary="weight clustering: each kernel keeps a few distinct values (compresses well)",
         tag=cluster.tag, resolve=cluster.resolve, model_problems=cluster.model_problems, verify=cluster.verify),
    Step("qat", qat.QATSpec, qat.qat, tool="tfmot quantize_apply (QAT, PQAT, CQAT, PCQAT)",
         summary="quantization-aware training: int8 ranges learned while fine-tuning",
         tag=qat.tag, quantizes=True, last=True, file_suffix=".h5", restore=qat.restore, resolve=qat.resolve, verify=qat.verify),
    Step("distill", distill.DistillSpec, distill.distill, tool="Keras fit on a distillation loss",
         summary="knowledge distillation from a teacher into this model or a smaller student",
         tag=distill.tag, replaces_model=lambda spec: spec.student != "self", model_problems=distill.model_problems),
    Step("channels", channel_step.ChannelPruneSpec, channel_step.run, tool="edgeopt channel surgery (channels.py)",
         summary="structured pruning: whole channels removed, a smaller dense model (fewer MACs in every runtime)",
         tag=channel_step.tag, verify=channel_step.verify),
]}


def find_step(name) -> Step | None:
    return STEPS.get(name)
