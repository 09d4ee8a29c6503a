"""recipes/efficientdet_lite0_prune_qat.yaml end to end through tools/optimize.py (a real
subprocess) with tiny settings: train -> prune -> QAT -> int8 detector export -> Edge TPU
analysis, every stage scored as COCO mAP; plus the detector rules of the recipe schema."""

import json

import numpy as np
import pytest

from nlighten_tf.recipes import loader, schema
from tests.tools_runner import REPO, run_tool

RECIPE = REPO / "recipes" / "efficientdet_lite0_prune_qat.yaml"
TINY = [
    "model.options.backbone_options={width_coefficient: 0.5, depth_coefficient: 0.34}",
    "model.options.fpn_num_filters=16",
    "data.image_size=64",
    "data.train_split=train[:32]",
    "data.eval_split=test[:8]",
    "stages.train.epochs=1",
    "stages.prune.epochs=1",
    "stages.prune.frequency=1",
    "stages.qat.epochs=1",
    "stages.export.calibration_samples=8",
]


@pytest.mark.slow
def test_detection_recipe_runs_end_to_end(tmp_path):
    overrides = [f"--override={o}" for o in TINY]
    result = run_tool("tools/optimize.py", f"--recipe={RECIPE}", f"--output_dir={tmp_path}", *overrides, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "efficientdet_lite0_prune_qat"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"]
    stages = {row["stage"]: row for row in summary["stages"]}
    assert list(stages) == ["01-train", "02-prune", "03-qat"]
    for row in stages.values():
        assert 0.0 <= row["map_50"] <= 1.0 and 0.0 <= row["map"] <= row["map_50"] and row["accuracy"] is None
    assert abs(stages["02-prune"]["prunable_sparsity"] - 0.5) < 0.02
    exports = {e["target"]: e for e in summary["exports"]}
    assert set(exports) == {"int8", "edgetpu"}
    assert exports["int8"]["examples"] == 8 and "tflite" in exports["int8"]["runtime"]
    assert {"map", "map_50", "map_75"} <= set(exports["int8"]) and "top1" not in exports["int8"]
    report = (run / "report.md").read_text()
    assert "map_50_%" in report and "top1_%" not in report and "COCO mAP" in report
    assert "mAP@0.5" in result.stdout

    # The int8 file of the QAT model: post-process op at the end, int8 convolutions, and it runs.
    from nlighten_tf.export import detection as export_detection
    from nlighten_tf.litert import flatbuffer, runtime

    path = run / exports["int8"]["file"]
    graph = flatbuffer.parse(path.read_bytes())
    assert graph.op_types[-1] == "TFLite_Detection_PostProcess"
    convs = [
        graph.tensors[op.outputs[0]]
        for op, k in zip(graph.operators, graph.op_types, strict=True)
        if k == "CONV_2D"
    ]
    assert convs and all(flatbuffer.dtype_name(t.type) == "int8" for t in convs)
    out = export_detection.run_detector(runtime.load(path, xnnpack=False).interpreter, np.zeros((64, 64, 3)))
    assert np.isfinite(out["boxes"]).all() and np.isfinite(out["scores"]).all()
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["labels"] == ["rectangle", "ellipse", "triangle"] and sidecar["task"] == "detection"
    from nlighten_tf.export import metadata  # what the Task Library's ObjectDetector reads

    embedded = metadata.read(path.read_bytes())
    assert embedded["labels"] == sidecar["labels"] and embedded["outputs"][0] == "location"

    # Edge TPU: the same int8 file, the network maps, the post-process is on the CPU by design.
    assert (run / exports["edgetpu"]["file"]).read_bytes() == path.read_bytes()
    edgetpu = json.loads((run / "05-edgetpu" / "metrics.json").read_text())["edgetpu"]
    assert edgetpu["status"] == "mapped" and edgetpu["ops_mapped"] == 1.0, edgetpu["verdict"]
    assert "post-process" in edgetpu["verdict"] and "CPU by design" in edgetpu["verdict"]
    assert "TFLite_Detection_PostProcess" in (run / "05-edgetpu" / "compat.txt").read_text()


def test_shipped_detection_recipe_plans_with_the_voc_override(tmp_path):
    """What `--dry_run` prints (runner.describe_run), in process: the tool's dry-run path itself is
    covered by tests/tools/test_optimize_tool.py, and the run above goes through the tool."""
    from nlighten_tf.recipes import runner

    loaded = loader.load(RECIPE, ["data.spec=tfds:voc/2012", "data.eval_split=validation"])
    assert loaded.data.spec == "tfds:voc/2012"
    text = runner.describe_run(loaded, tmp_path)
    assert "05-edgetpu" in text and "[to run]" in text


def recipe(**changes):
    raw = schema.parse_yaml(RECIPE.read_text(), "r")
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    return schema.from_dict(raw, "r.yaml")


def test_detector_rules():
    assert recipe().stages[0].type == "train"
    with pytest.raises(
        schema.RecipeError, match="efficientdet_lite0 is a detector; use a detection data set"
    ):
        recipe(data__spec="digits")
    with pytest.raises(
        schema.RecipeError, match="is a detection data set but efficientnet_lite0 is not a detector"
    ):
        recipe(model={"name": "efficientnet_lite0"})
    with pytest.raises(schema.RecipeError, match=r"stage 2 \(distill\): distill does not support detectors"):
        recipe(stages=[{"train": {}}, {"distill": {"teacher": {"name": "efficientdet_lite0"}}}])
    with pytest.raises(schema.RecipeError, match="key 'targets': int8_sparse not available for detectors"):
        recipe(stages=[{"train": {}}, {"export": {"targets": ["int8_sparse"]}}])
    with pytest.raises(schema.RecipeError, match="key 'augment': not available for detection data"):
        recipe(data__augment="basic")
