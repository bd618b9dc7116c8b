"""Knowledge distillation: the student (the model being optimized, or an efficient architecture from
students.py) learns the teacher's softened outputs, and the labels when there are any:

    loss = alpha * task_loss + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The teacher is the source model (default) or a Keras model file. The loss itself lives in objective.py,
shared with every training step, so pruning, clustering and QAT can distil too (teacher: auto follows
this step's teacher).

Gotchas: with unlabelled training data alpha is 0 (the teacher alone); a built student starts from random
weights, so it needs more epochs than fine-tuning (default 10) and discards earlier steps (put it first).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .training import FineTuneSpec


class DistillSpec(FineTuneSpec):
    teacher: str = Field("source", description="the model to learn from: source (the input model) or a Keras "
                         "model file")
    student: Literal["self", "ds_cnn", "mobilenet"] = Field(
        "self", description="self (the model being optimized), ds_cnn (depthwise-separable CNN) or mobilenet "
        "(MobileNet v1 body), built for the model's input and outputs")
    width: float = Field(0.5, gt=0, le=4, description="width multiplier of a built student's channels")
    epochs: int = Field(10, ge=1, le=1000, description="passes over the training data")

    def problems(self) -> list[str]:
        found = super().problems()
        if self.teacher in ("none", "auto"):
            found.append(f"distill needs a teacher: source (the input model) or a Keras model file, not {self.teacher}")
        if self.width != type(self).model_fields["width"].default and self.student == "self":
            found.append("width applies to a built student (ds_cnn, mobilenet), not student: self")
        return found


def tag(spec) -> str:
    return "distilled" if spec.student == "self" else f"distilled-{spec.student}{round(spec.width * 100)}"


def distill(model, spec, train, *, seed=0, progress=True, log=print, fine_tune):
    """Train the student towards the teacher; return (student, record for the manifest)."""
    student = model
    if spec.student != "self":
        from . import students
        from .objective import _is_probabilities
        from .keras_training import predict

        probabilities = _is_probabilities(predict(model, [a[:64] for a in train.x])[0])
        student = students.build(spec.student, tuple(model.inputs[0].shape[1:]), int(model.outputs[0].shape[-1]),
                                 spec.width, probabilities, seed)
        if spec.mixed_precision:  # the runner retyped the model it handed over; a new student needs it too
            from .precision import MIXED, with_policy

            student = with_policy(student, MIXED)
    log(f"distilling into {student.name} ({student.count_params():,} parameters, the model had "
        f"{model.count_params():,}) for {spec.epochs} epochs")
    fine_tune(student, train, spec.epochs)
    return student, {"student": spec.student, "student_name": student.name,
                     "parameters": {"before": int(model.count_params()), "after": int(student.count_params())}}


def model_problems(model, spec, where) -> list[str]:
    if spec.student == "self":
        return []
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return [f"{where}: student {spec.student!r} is built for one input and one output; this model has "
                f"{len(model.inputs)} and {len(model.outputs)}: use student: self"]
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) not in (2, 3) or None in shape:
        return [f"{where}: student {spec.student!r} takes images (height, width, channels) or sequences (steps, "
                f"features) of a fixed size; this model's input is {shape}: use student: self"]
    return []
