"""Task objects (nlighten_tf.tasks): picked by the model's registry task, each answering what the
recipe machinery asks (data targets, losses, scoring, export, supported stages, report columns);
and the runner, stages and report asking them instead of branching on the kind of model."""

import ast
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from nlighten_tf import data, tasks
from nlighten_tf.models import detection, registry
from nlighten_tf.recipes import report, runner, schema, stages
from nlighten_tf.tasks.classification import ClassificationTask
from nlighten_tf.tasks.detection import DetectionTask
from nlighten_tf.tasks.segmentation import SegmentationTask
from tests.bench.test_detection_map import Oracle

CLASSIFIER = {
    "name": "t", "model": {"name": "mobilenet_v2", "options": {"width_multiplier": 0.35}},
    "data": {"spec": "digits", "image_size": 32, "eval_limit": 32}, "stages": [{"train": {"epochs": 1}}],
}  # fmt: skip
DETECTOR = {
    "name": "d", "model": {"name": "efficientdet_lite0"},
    "data": {"spec": "shapes", "image_size": 64, "train_split": "train[:16]", "eval_split": "test[:8]"},
    "stages": [{"train": {"epochs": 1}}, {"export": {"targets": ["int8"]}}],
}  # fmt: skip


def recipe(base, data_keys=None, **sections):
    """`base` with some `data` keys and whole sections replaced, validated."""
    raw = copy.deepcopy(base)
    raw["data"].update(data_keys or {})
    return schema.from_dict({**raw, **sections}, "r.yaml")


def test_the_factory_picks_the_task_of_the_models_registry_entry():
    assert type(tasks.for_model("efficientnet_lite0")) is ClassificationTask
    assert type(tasks.for_model("mobilenet_v2")) is ClassificationTask
    assert type(tasks.for_model("efficientdet_lite0")) is DetectionTask
    assert type(tasks.for_model("lraspp_mobilenet_v2")) is SegmentationTask
    for name in registry.names(task=None):
        task = registry.info(name).task
        if task in tasks.TASKS:
            assert tasks.for_model(name).name == task
        else:
            with pytest.raises(tasks.TaskError, match=f"{name} is a {task} model; recipes run classification"):
                tasks.for_model(name)
    with pytest.raises(tasks.TaskError, match="task 'bogus' has no recipe support; supported: classification, detection"):
        tasks.get("bogus")


def test_a_model_without_a_task_object_is_one_recipe_error():
    with pytest.raises(schema.RecipeError) as error:
        recipe(CLASSIFIER, model={"name": "keypoints_lite0"})
    assert str(error.value) == (
        "r.yaml: model: key 'name': keypoints_lite0 is a keypoints model; recipes run classification, "
        "detection, segmentation models"
    )


def test_the_classification_task_answers(digits_keras, tmp_path):
    loaded = recipe(CLASSIFIER)
    task = tasks.for_model(loaded.model.name)
    assert task.stage_types is None and task.export_targets is None  # every stage type and target
    assert task.compile_options(10) is None  # the classifier's cross-entropy
    assert task.calibration_split(loaded) == "train"
    assert task.checks_raw_splits and task.scores_on_devices and task.edgetpu_reuses is None
    train, info = data.load("digits", "train", image_size=32, batch_size=8, limit=16)
    assert task.training_data(train, info, loaded) is train  # (image, class id) batches as loaded
    with pytest.raises(schema.RecipeError, match="r.yaml: data: key 'spec': 'shapes' is a detection data set"):
        recipe(CLASSIFIER, {"spec": "shapes"})  # schema.check_task asks the task

    scored, _ = data.load("digits", "test", image_size=32, batch_size=16, limit=32, preprocessing="lite")
    quality = task.evaluate_keras(digits_keras, scored, loaded)
    assert set(quality) == {"accuracy", "top5", "loss"} and 0.5 < quality["accuracy"] <= quality["top5"] <= 1.0
    assert task.has_model_score(quality) and not task.has_model_score({"map_50": 0.5})
    assert task.model_score_text({"accuracy": 0.912}) == "accuracy 91.20%"

    path = tmp_path / "fp32.tflite"
    labels = tuple(str(d) for d in range(10))
    result = task.export_file(digits_keras, path, "fp32", recipe=loaded, labels=labels, scheme="lite",
                              calibration=None, io_type=None, extra={"stage": "01-x"})  # fmt: skip
    assert path.exists() and isinstance(result.notes, list)
    measured = task.evaluate_file(path, scored, loaded, "auto")
    assert set(measured) == {"top1", "top5", "examples", "runtime"} and measured["examples"] == 32
    assert abs(measured["top1"] - quality["accuracy"]) <= 1 / 32 + 1e-6  # the same 32 images, fp32
    assert task.file_score_text({"top1": 0.25}) == "top-1 25.00%" and task.file_score_text({}) == ""

    # Report columns: as before the tasks existed.
    assert report.stage_columns(task) == (
        "stage", "top1_%", "top5_%", "sparsity_%", "clusters", "params", "model_bytes", "wall_time_s"
    )
    assert report.export_columns(task) == (
        "name", "source_stage", "top1_%", "top5_%", "size_bytes", "gzip_bytes", "smaller_than_first",
        "gzip_smaller_than_first", "zeros_%", "values_per_channel", "median_ms",
    )  # fmt: skip


def test_the_detection_task_answers():
    from nlighten_tf.tasks import detection as detection_task

    loaded = recipe(DETECTOR)
    task = tasks.for_model(loaded.model.name)
    assert task.stage_types == ("train", "prune", "cluster", "qat", "export", "edgetpu")
    assert task.export_targets == ("int8", "fp32")
    assert set(task.compile_options(3)["loss"]) == {detection.CLASS_OUTPUT, detection.BOX_OUTPUT}
    assert task.calibration_split(loaded) == "train[:16]"  # the training split as configured
    assert not task.checks_raw_splits and not task.scores_on_devices and task.edgetpu_reuses == "int8"
    for changes, message in (
        ({"data_keys": {"spec": "digits"}}, "r.yaml: data: key 'spec': efficientdet_lite0 is a detector; use a detection"),
        ({"data_keys": {"augment": "basic"}}, "r.yaml: data: key 'augment': not available for detection data"),
        ({"stages": [{"lowrank": {}}]}, r"r.yaml: stage 1 \(lowrank\): lowrank does not support detectors; "
                                        "detector recipes use train, prune"),
        ({"stages": [{"train": {}}, {"export": {"targets": ["fp32", "int8_sparse"]}}]},
         "r.yaml: stage 2 \\(export\\): key 'targets': int8_sparse not available for detectors; valid: int8, fp32 "
         r"\(TFLite_Detection_PostProcess at the end, float I/O\)"),
    ):  # fmt: skip
        with pytest.raises(schema.RecipeError, match=message):
            recipe(DETECTOR, **changes)

    # Training data: box dicts -> per-anchor targets for both outputs.
    train, info = data.load("shapes", "train[:4]", image_size=64, batch_size=4)
    images, targets = next(iter(task.training_data(train, info, loaded)))
    anchors = detection_task.anchors(loaded)
    assert set(targets) == {detection.CLASS_OUTPUT, detection.BOX_OUTPUT}
    assert targets[detection.CLASS_OUTPUT].shape == (4, len(anchors), 5)

    # Keras scoring: an oracle that outputs the encoded ground truth scores mAP@0.5 = 1.
    scored, info = data.load("shapes", "test[:4]", image_size=64, batch_size=4)
    _, truth = next(iter(scored))
    labels = detection.encode_targets(truth, anchors, (64, 64), info.box_format).numpy()
    positive = labels[..., 4] >= 0
    logits = np.where(np.eye(3)[np.maximum(labels[..., 4], 0).astype(int)] * positive[..., None] > 0, 8.0, -8.0)
    quality = task.evaluate_keras(Oracle(logits, labels[..., :4]), scored, loaded)
    assert quality["map_50"] == pytest.approx(1.0) and quality["accuracy"] is None and quality["top5"] is None
    assert task.has_model_score(quality) and not task.has_model_score({"accuracy": 0.5})
    assert task.model_score_text({"map": 0.4123, "map_50": 0.8}) == "mAP 0.412, mAP@0.5 0.800"
    assert task.file_score_text({"map": 0.4, "map_50": 0.75}) == "mAP@0.5 0.750" and task.file_score_text({}) == ""

    assert report.stage_columns(task) == (
        "stage", "map_%", "map_50_%", "map_75_%", "sparsity_%", "clusters", "params", "model_bytes", "wall_time_s"
    )
    assert report.export_columns(task) == (
        "name", "source_stage", "map_%", "map_50_%", "map_75_%", "size_bytes", "gzip_bytes", "smaller_than_first",
        "gzip_smaller_than_first", "zeros_%", "values_per_channel", "median_ms",
    )  # fmt: skip


SEGMENTER = {
    "name": "seg", "model": {"name": "lraspp_mobilenet_v2",
                             "options": {"backbone_options": {"width_multiplier": 0.35}, "head_filters": 16}},
    "data": {"spec": "shapes", "image_size": 32, "batch_size": 8, "train_split": "train[:16]", "eval_split": "test[:4]",
             "validation": "none"},
    "stages": [{"train": {"epochs": 1}}, {"export": {"targets": ["fp32", "int8"], "calibration_samples": 8}}],
}  # fmt: skip


def test_segmentation_recipes_are_refused_what_the_task_does_not_support():
    for changes, message in (
        ({"data_keys": {"spec": "digits"}}, "r.yaml: data: key 'spec': lraspp_mobilenet_v2 is a segmenter; use a"),
        ({"stages": [{"distill": {"teacher": {"name": "mobilenet_v2"}}}]},
         r"stage 1 \(distill\): distill does not support segmenters; segmenter recipes use train, prune"),
        ({"model": {"name": "lraspp_mobilenet_v2", "options": {"output_stride": 8}}},
         "r.yaml: model: key 'options.output_stride': recipes score full-resolution masks: use 1"),
    ):  # fmt: skip
        with pytest.raises(schema.RecipeError, match=message):
            recipe(SEGMENTER, **changes)


@pytest.mark.slow
def test_a_segmentation_recipe_runs_through_the_same_machinery(tmp_path):
    """The segmentation task added in one place (tasks/segmentation.py + TASKS): the runner,
    stages and report run it as they run the others, scored as mean IoU (Keras and interpreter)."""
    result = runner.run(recipe(SEGMENTER), tmp_path, log=lambda line: None, verbose=0)
    rows = json.loads((result.run_dir / "summary.json").read_text())
    (stage,) = rows["stages"]
    assert 0.0 <= stage["mean_iou"] <= 1.0 and stage["accuracy"] is None
    exports = {e["target"]: e for e in rows["exports"]}
    assert set(exports) == {"fp32", "int8"} and all(e["examples"] == 4 for e in exports.values())
    # The fp32 file computes what the Keras model does: the same mean IoU on the same images.
    assert exports["fp32"]["mean_iou"] == pytest.approx(stage["mean_iou"], abs=1e-3)
    assert 0.0 <= exports["int8"]["mean_iou"] <= 1.0
    report_text = (result.run_dir / "report.md").read_text()
    assert "miou_%" in report_text and "mean IoU through the interpreter" in report_text and "top1_%" not in report_text


def test_the_one_line_summary_and_the_report_follow_the_task():
    detector, classifier = tasks.get("detection"), tasks.get("classification")
    stage = {"stage": "01-train", "accuracy": None, "top5": None, "map": 0.25, "map_50": 0.5, "map_75": 0.2,
             "prunable_sparsity": 0.0, "params": 10, "model_bytes": 2e6, "wall_time_s": 3.0}  # fmt: skip
    assert runner.one_line(stage, detector).startswith("mAP 0.250, mAP@0.5 0.500, sparsity 0.0%, params 10")
    assert report.stage_rows([stage], detector)[0]["map_50"] == 0.5
    assert report.stage_rows([stage], classifier) == []  # no accuracy: not a scored classifier stage
    recipe_dict = {"name": "d", "model": {"name": "efficientdet_lite0"}, "data": {"spec": "shapes", "image_size": 64,
                   "eval_split": "test"}}  # fmt: skip
    text = report.markdown(recipe_dict, [stage], 1, {}, detector)
    assert "COCO mAP, keras-cv NMS" in text and "map_50_%" in text and "top1_%" not in text


FORBIDDEN_STRINGS = {*tasks.TASKS, "map", "map_50", "map_75", "mean_iou", "xyxy"}
FORBIDDEN_NAMES = ("box_format", "anchors")


def task_branches(source: str) -> list[str]:
    """`line: what` for every task name, metric key of one task or detection helper in the code
    of `source` (comments are not code)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FORBIDDEN_STRINGS:
            found.append(f"{node.lineno}: {node.value!r}")
        names = {ast.Name: "id", ast.Attribute: "attr", ast.alias: "name", ast.FunctionDef: "name"}
        name = getattr(node, names.get(type(node), ""), None)
        if isinstance(name, str) and ("detect" in name.lower() or name in FORBIDDEN_NAMES):
            found.append(f"{getattr(node, 'lineno', '?')}: {name}")
    return found


def test_the_runner_stages_and_report_ask_the_task_instead_of_branching():
    """What differs per task is a `Task` attribute or method, not a branch in the recipe machinery."""
    for module in (runner, stages, report):
        path = Path(module.__file__)
        assert task_branches(path.read_text()) == [], path.name


def test_the_branch_finder_finds_the_old_branches():
    old = (
        'if ctx.task == "detection":\n'
        "    from nlighten_tf.bench import detection as bench_detection\n"
        '    x = bench_detection.evaluate_keras(model, ctx.eval, ctx.anchors, ctx.box_format or "xyxy")\n'
        'detector = any(m.get("map_50") is not None for m in metrics)\n'
    )
    assert set(task_branches(old)) == {
        "1: 'detection'", "2: detection", "3: bench_detection", "3: anchors", "3: box_format", "3: 'xyxy'",
        "4: 'map_50'", "4: detector",
    }  # fmt: skip
