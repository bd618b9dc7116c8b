"""Knowledge distillation: the loss as written, the students, and learning from a teacher without labels."""

import numpy as np
import pytest

import edgeopt
from edgeopt import data
from edgeopt.errors import DataError
from edgeopt.steps.objective import Objective, build_objective
from edgeopt.steps.training import FineTuneSpec


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_loss_is_alpha_task_plus_t_squared_kl_of_the_softened_outputs():
    import tf_keras as keras

    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(16, 5)) * 3, rng.normal(size=(16, 5)) * 3
    labels = rng.integers(0, 5, size=16)
    alpha, t = 0.3, 2.0
    objective = Objective(keras.losses.SparseCategoricalCrossentropy(from_logits=True), "sce", teacher.astype(np.float32),
                          alpha, t, classifier=True, student_probabilities=False,
                          labels=labels[:, None].astype(np.float32))
    y = objective.targets(data.Dataset([student], labels, "x"))
    got = objective.loss()(y, student.astype(np.float32)).numpy()
    p_t, p_s = softmax(teacher / t), softmax(student / t)
    kl = np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1)
    task = -np.log(softmax(student)[np.arange(16), labels])
    np.testing.assert_allclose(got, alpha * task + (1 - alpha) * t * t * kl, rtol=1e-4)


def test_softmax_outputs_distil_like_their_logits():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=(8, 4)).astype(np.float32)
    common = dict(task_loss=None, task_loss_name=None, alpha=0.0, temperature=3.0, classifier=True, labels=None)
    on_logits = Objective(teacher=teacher, student_probabilities=False, **common)
    on_probabilities = Objective(teacher=teacher, student_probabilities=True, **common)
    y = on_logits.targets(data.Dataset([student], None, "x"))
    np.testing.assert_allclose(on_probabilities.loss()(y, softmax(student).astype(np.float32)).numpy(),
                               on_logits.loss()(y, student).numpy(), rtol=1e-4)


@pytest.mark.parametrize("alpha,labels,pattern", [
    (None, False, r"has no labels: give labels .*or let it distil from a teacher"),
    (0.5, False, r"alpha 0.5 weighs the task loss, which needs labels.*set alpha: 0"),
])
def test_learning_without_labels_needs_a_teacher_and_alpha_zero(alpha, labels, pattern):
    import tf_keras as keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.zeros((8, 4), np.float32)
    teacher = None if alpha is None else np.zeros((8, 3), np.float32)
    with pytest.raises(DataError, match=pattern):
        build_objective(model, data.Dataset([x], None, "x"), FineTuneSpec(alpha=alpha), teacher, "source", step="s")


@pytest.mark.parametrize("student,shape", [("ds_cnn", (8, 8, 1)), ("mobilenet", (8, 8, 1)), ("ds_cnn", (8, 8))])
def test_students_are_built_for_the_input_the_outputs_and_the_width(student, shape):
    from edgeopt.steps import students

    half = students.build(student, shape, 10, width=0.5)
    full = students.build(student, shape, 10, width=1.0, probabilities=True)
    assert tuple(half.input_shape[1:]) == shape and half.output_shape == (None, 10)
    assert half.count_params() < 0.45 * full.count_params()  # channels scale with width, weights with its square
    assert full.layers[-1].activation.__name__ == "softmax" and any("DepthwiseConv" in type(la).__name__ for la in half.layers)


def test_a_built_student_trains_in_bfloat16_when_mixed_precision_is_asked():
    # The runner retypes the model it hands over; a student built inside the step must follow (it once did not,
    # and the benchmark compared float32 with float32).
    import tf_keras as keras

    from edgeopt.steps.distill import DistillSpec, distill
    from edgeopt.steps.keras_training import _compute_dtype

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    trained = []
    spec = DistillSpec(student="ds_cnn", mixed_precision=True)
    train = data.Dataset([np.zeros((8, 8, 8, 1), np.float32)], None, "x")
    student, _ = distill(model, spec, train, log=lambda *_: None, fine_tune=lambda m, *_: trained.append(m))
    assert trained == [student] and _compute_dtype(student) == "bfloat16"
    assert student.layers[-1].compute_dtype == "float32"  # the output layer stays float32 (the loss in float32)


def test_a_student_for_a_flat_input_is_refused_with_the_way_out():
    from edgeopt.errors import ConversionError
    from edgeopt.steps import students

    with pytest.raises(ConversionError, match=r"takes images .* or sequences .*input is \(64,\): use student: self"):
        students.build("ds_cnn", (64,), 10)


def test_a_built_student_learns_a_teacher_file_from_unlabelled_inputs(model_h5, tmp_path):
    recipe = {"optimize": [{"distill": {"student": "ds_cnn", "width": 0.5, "epochs": 4, "teacher": str(model_h5)}}],
              "exports": [{"format": "tflite", "precision": "fp32"}]}
    inputs = data.Dataset(data.digits("train").x, None, "digits inputs")
    manifest = edgeopt.convert(str(model_h5), recipe, train=inputs, evaluation="digits", out=tmp_path,
                               progress=False, log=lambda *_: None)
    student = manifest.get("digits_cnn.distilled-ds_cnn50.keras")
    assert student.status == "ok", student.error
    assert student.facts["data"]["labels"] is False and student.facts["training"][0]["objective"]["alpha"] == 0.0
    from edgeopt.fileio import sha256_file

    assert student.facts["teacher"] == {"model": str(model_h5), "sha256": sha256_file(model_h5)}
    assert student.facts["result"]["parameters"]["after"] < 0.5 * student.facts["result"]["parameters"]["before"]
    assert student.check["top1_agreement"] > 0.6 and student.check["accuracy"] > 0.6
    assert manifest.get("digits_cnn.distilled-ds_cnn50.fp32.tflite").ok


def test_synthetic_training_inputs_are_a_choice_when_every_step_distils(model_h5, tmp_path):
    recipe = {"optimize": [{"distill": {"epochs": 1}}], "exports": [{"format": "tflite", "precision": "fp32"}]}
    logs = []
    manifest = edgeopt.convert(str(model_h5), recipe, train="synthetic", evaluation="digits", out=tmp_path,
                               progress=False, log=logs.append)
    step = manifest.get("digits_cnn.distilled.keras")
    assert step.ok and step.facts["data"]["synthetic"] is True and step.facts["data"]["samples"] == 1024
    assert any("synthetic" in line and "may not carry over" in line for line in logs)
