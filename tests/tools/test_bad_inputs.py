"""Bad input is one clear error line and a non-zero exit, found before any work (issue 17
items 5-10): non-finite and absurd numbers, model options of the wrong type or range, data,
splits and weights that do not exist, duplicate YAML keys, binary recipes, output paths that
are files or read-only, files that are not Keras models; a diverging training stops with an
error instead of saving a NaN model; written files follow the umask; a refused --resume names
the changed keys; benchmark.py warns when the model's classes are not the data's."""

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nlighten_tf import io as atomic
from nlighten_tf.recipes import loader, runner, schema
from tests.tools_runner import REPO, run_tool

QUICKSTART = REPO / "recipes" / "quickstart.yaml"
# /sys refuses new files even to root, for whom a chmod'ed directory would still be writable.
READ_ONLY_DIR = Path("/sys")


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


# --- Recipe values (validated before --dry_run prints the plan) --------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stages.train.learning_rate=.nan", "stage 1 (train): key 'learning_rate': must be a finite number, got nan"),
        ("stages.train.learning_rate=.inf", "stage 1 (train): key 'learning_rate': must be a finite number, got inf"),
        ("stages.train.epochs=1e308", "stage 1 (train): key 'epochs': at most 10,000 epochs, got 1e+308"),
        ("stages.prune.end_epoch=1e9", "stage 4 (prune): key 'end_epoch': at most 10,000 epochs"),
        ("stages.cluster.label_smoothing=.nan", "stage 5 (cluster): key 'label_smoothing': must be a finite number"),
        ("stages.benchmark.runs=100000000000000", "stage 8 (benchmark): key 'runs': 100000000000000 is out of range"),
        ("seed=99999999999", "key 'seed': expected an integer from 0 to 2,147,483,647"),
        ("model.options.width_coefficient=abc", "model: key 'options.width_coefficient': expected a number or null, got str 'abc'"),
        ("model.options.width_coefficient=-1", "model: key 'options.width_coefficient': must be > 0"),
        ("model.options.depth_coefficient=.nan", "model: key 'options.depth_coefficient': must be a finite number"),
        ("model.options.head_filters=1.5", "model: key 'options.head_filters': expected an integer or null, got float 1.5"),
        ("model.options.dropout_rate=1.5", "model: key 'options.dropout_rate': must be from 0 to below 1, got 1.5"),
    ],
)  # fmt: skip
def test_the_recipe_refuses(override, message):
    with pytest.raises(schema.RecipeError) as raised:
        loader.load(QUICKSTART, [override])
    assert f"{QUICKSTART}: {message}" in str(raised.value)


def test_model_options_of_the_right_type_and_range_pass():
    recipe = loader.load(QUICKSTART, ["model.options.width_coefficient=1", "model.options.dropout_rate=0"])
    assert recipe.model.options["width_coefficient"] == 1  # kept as written (the resolved recipe compares it)


def test_a_duplicate_key_is_refused(tmp_path):
    text = QUICKSTART.read_text().replace("seed: 0\n", "seed: 0\nseed: 1\n", 1)
    (tmp_path / "dup.yaml").write_text(text)
    with pytest.raises(schema.RecipeError, match=r"dup.yaml: key 'seed' appears twice in one mapping \(lines \d+ and \d+\)"):
        loader.load(tmp_path / "dup.yaml")
    nested = QUICKSTART.read_text().replace("{epochs: 6,", "{epochs: 6, epochs: 1,", 1)
    (tmp_path / "nested.yaml").write_text(nested)
    with pytest.raises(schema.RecipeError, match="key 'epochs' appears twice"):
        loader.load(tmp_path / "nested.yaml")
    # A key a `<<:` merge brings in may be overridden: that is what merges are for.
    assert schema.parse_yaml("a: &A {x: 1, y: 2}\nb: {<<: *A, x: 3}", "m") == {"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}}


def test_a_binary_recipe_is_refused(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: x\n\xff\xfe\x00\x01binary")
    with pytest.raises(schema.RecipeError, match=r"binary.yaml: not a text \(UTF-8\) file: byte 0xff at offset 8"):
        loader.load(path)


# --- What --dry_run checks exists ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.spec=folder:/nonexistent/images"], "data (spec 'folder:/nonexistent/images', train_split 'train'):"),
        (["data.spec=digits", "data.eval_split=bogus"], "data (spec 'digits', eval_split 'bogus'): split 'bogus' does not exist"),
        (["data.spec=digits", "model.weights=/nonexistent/w.h5"], "model: key 'weights': weights file /nonexistent/w.h5 does not exist"),
    ],
)  # fmt: skip
def test_missing_inputs_are_found_before_the_run(overrides, message):
    recipe = loader.load(QUICKSTART, overrides)
    with pytest.raises(schema.RecipeError) as raised:
        runner.check_inputs(recipe)
    assert message in str(raised.value)


def test_the_shipped_quickstart_inputs_pass_on_digits():
    runner.check_inputs(loader.load(QUICKSTART, ["data.spec=digits"]))


def test_dry_run_reports_a_bad_option_and_a_missing_split_as_one_line(tmp_path):
    bad = run_tool("tools/optimize.py", f"--recipe={QUICKSTART}", f"--output_dir={tmp_path}", "--dry_run",
                   "--override=model.options.width_coefficient=abc")  # fmt: skip
    assert_one_line_error(bad, "key 'options.width_coefficient': expected a number or null")
    missing = run_tool("tools/optimize.py", f"--recipe={QUICKSTART}", f"--output_dir={tmp_path}", "--dry_run",
                       "--override=data.spec=digits", "--override=data.eval_split=bogus")  # fmt: skip
    assert_one_line_error(missing, "split 'bogus' does not exist")
    assert not list(tmp_path.iterdir())


# --- Output paths -------------------------------------------------------------------------


def test_output_path_checks(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(atomic.OutputPathError, match=f"--output_dir {afile}: {afile} is a file, not a directory"):
        atomic.check_output_dir(afile, "--output_dir")
    with pytest.raises(atomic.OutputPathError, match=f"{afile} is a file, not a directory"):
        atomic.check_output_dir(afile / "sub" / "dir", "--output_dir")
    with pytest.raises(atomic.OutputPathError, match="directory /sys is not writable"):
        atomic.check_output_dir(READ_ONLY_DIR / "nlighten_runs", "--output_dir")
    with pytest.raises(atomic.OutputPathError, match=f"--json_out {tmp_path}: is a directory"):
        atomic.check_output_file(tmp_path, "--json_out")
    with pytest.raises(atomic.OutputPathError, match="directory /sys is not writable"):
        atomic.check_output_file(READ_ONLY_DIR / "x.json", "--json_out")
    atomic.check_output_dir(tmp_path / "new" / "dir")
    atomic.check_output_file(tmp_path / "new" / "file.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the checks create nothing


def test_optimize_refuses_an_output_dir_that_is_a_file_or_read_only(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run_tool(
        "tools/optimize.py", f"--recipe={QUICKSTART}", f"--output_dir={afile}", "--override=data.spec=digits"
    )
    assert_one_line_error(result, f"--output_dir {afile}: {afile} is a file, not a directory")
    result = run_tool(
        "tools/optimize.py", f"--recipe={QUICKSTART}", "--output_dir=/sys/nlighten_runs", "--override=data.spec=digits"
    )
    assert_one_line_error(result, "--output_dir /sys/nlighten_runs: directory /sys is not writable")


def test_train_checks_its_output_and_options_before_training(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    common = ["--model_option=width_coefficient=0.5", "--model_option=depth_coefficient=0.34",
              "--model_option=head_filters=64", "--train_limit=64", "--eval_limit=32", "--epochs=1"]  # fmt: skip
    result = run_tool("tools/train.py", *common, f"--output={afile}/m.h5")
    assert_one_line_error(result, f"--output {afile}/m.h5: {afile} is a file, not a directory")
    assert "training efficientnet_lite0" not in result.stdout  # refused before training
    result = run_tool("tools/train.py", "--model_option=width_coefficient=abc", f"--output={tmp_path}/m.h5")
    assert_one_line_error(result, "--model=efficientnet_lite0 --model_option: key 'width_coefficient': expected a number")
    result = run_tool("tools/train.py", "--model_option=width_coefficient=-1", f"--output={tmp_path}/m.h5")
    assert_one_line_error(result, "key 'width_coefficient': must be > 0")
    result = run_tool("tools/train.py", *common, "--learning_rate=nan", f"--output={tmp_path}/m.h5")
    assert_one_line_error(result, "learning_rate must be a finite number, got nan")
    assert not list(tmp_path.glob("m.*"))


def test_models_and_inspect_check_json_out_first(tmp_path, tiny_tflite):
    result = run_tool("tools/models.py", "--summary", "--models=mobilenet_v2", f"--json_out={tmp_path}")
    assert_one_line_error(result, f"--json_out {tmp_path}: is a directory; give a file name")
    assert "building" not in result.stderr
    result = run_tool("tools/inspect_tflite.py", tiny_tflite, f"--json_out={tmp_path}")
    assert_one_line_error(result, f"--json_out {tmp_path}: is a directory; give a file name")
    result = run_tool("tools/inspect_tflite.py", tiny_tflite, "--json_out=/sys/inspect.json")
    assert_one_line_error(result, "--json_out /sys/inspect.json: directory /sys is not writable")


def test_benchmark_checks_its_output_dir_and_warns_about_the_class_count(tmp_path, tiny_tflite):
    afile = tmp_path / "afile"
    afile.write_text("x")
    common = [f"--tflite={tiny_tflite}", "--runs=2", "--warmup=1", "--norss"]
    result = run_tool("tools/benchmark.py", *common, f"--output_dir={afile}")
    assert_one_line_error(result, f"--output_dir {afile}: {afile} is a file, not a directory")
    result = run_tool(
        "tools/benchmark.py", *common, "--data=digits", "--limit=32", f"--output_dir={tmp_path / 'bench'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"warning: {tiny_tflite} outputs 12 classes but digits has 10" in result.stderr


def test_a_file_that_is_not_a_keras_model_is_named(tmp_path):
    fake = tmp_path / "notmodel.h5"
    fake.write_text("not an HDF5 file")
    result = run_tool("tools/channel_prune.py", f"--keras_model={fake}", f"--output={tmp_path}/out/pruned.h5")
    assert_one_line_error(result, f"--keras_model {fake}: not a loadable tf_keras model")
    result = run_tool("tools/export.py", f"--keras_model={fake}", "--targets=fp32", f"--output_dir={tmp_path}/ex")
    assert_one_line_error(result, f"--keras_model {fake}: not a loadable tf_keras model")


# --- Training that diverges ------------------------------------------------------------------


def test_a_nan_loss_stops_training_with_an_error():
    import tf_keras

    from nlighten_tf.optimize import training

    with pytest.raises(ValueError, match="learning_rate must be a finite number, got nan"):
        training.TrainConfig(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="epochs must be > 0 and <= 10,000"):
        training.TrainConfig(epochs=1e308)
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 8)).astype(np.float32)
    images[5, 3] = np.nan  # one bad example: the loss of its batch is NaN
    labels = rng.integers(0, 3, 64)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(3)])
    with pytest.raises(training.TrainingDiverged, match=r"the loss is nan at epoch 1, batch 1"):
        training.fit(model, data, training.TrainConfig(epochs=2, verbose=0))


@pytest.mark.slow
def test_a_diverging_stage_is_not_marked_complete(tmp_path):
    recipe = tmp_path / "nan.yaml"
    recipe.write_text("""
name: nan
model:
  name: efficientnet_lite0
  options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 64, dropout_rate: 0.0}
data: {spec: digits, image_size: 32, batch_size: 64, train_limit: 256, eval_limit: 60}
stages:
  - train: {epochs: 2, learning_rate: 1e30, lr_schedule: constant}
  - export: {targets: [fp32]}
""")
    result = run_tool("tools/optimize.py", f"--recipe={recipe}", f"--output_dir={tmp_path / 'runs'}")
    assert_one_line_error(result, "stage 1 (train): training diverged: the loss is")
    run = tmp_path / "runs" / "nan"
    assert not (run / "01-train").exists() and not list(run.glob(".*.partial"))
    assert not (run / "02-export").exists()


# --- Files written, the --resume refusal ---------------------------------------------------


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_written_files_follow_the_umask(tmp_path, umask_027):
    path = atomic.write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    os.umask(0o022)
    assert stat.S_IMODE(atomic.write_json(tmp_path / "b.json", {}).stat().st_mode) == 0o644


def test_an_exported_model_follows_the_umask(tmp_path, umask_027):
    from nlighten_tf.export import tflite

    result = tflite.export(_tiny_model(), tmp_path / "m.tflite", "fp32")
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o640
    assert stat.S_IMODE(result.sidecar.stat().st_mode) == 0o640


def test_a_refused_resume_names_the_changed_keys(tmp_path):
    recipe = loader.load(QUICKSTART, ["data.spec=digits"])
    run = tmp_path / "quickstart"
    (run / "01-train").mkdir(parents=True)
    (run / "01-train" / "metrics.json").write_text("{}")
    before = recipe.as_dict()
    before["stages"][0]["train"]["epochs"] = 2.0
    before["stages"][0]["train"]["learning_rate"] = 0.001
    (run / runner.RESOLVED_FILE).write_text(schema.dump_yaml(before))
    with pytest.raises(runner.RunError) as raised:
        runner.run(recipe, tmp_path, resume=True)
    message = str(raised.value)
    assert "stage 1 (train) completed with different settings (stages.1.train.epochs: 2.0 -> 6.0; " in message
    assert "stages.1.train.learning_rate: 0.001 -> 0.004)" in message
    assert "{" not in message  # not the whole stage dicts
    before = recipe.as_dict()
    before["model"]["options"]["width_coefficient"] = 0.5
    (run / runner.RESOLVED_FILE).write_text(schema.dump_yaml(before))
    with pytest.raises(runner.RunError, match=r"the recipe's 'model' changed since the run started \(model.options.width_coefficient: 0.5 -> 0.75\)"):
        runner.run(recipe, tmp_path, resume=True)


def _tiny_model(num_classes: int = 10):
    import tf_keras

    inputs = tf_keras.Input((32, 32, 3))
    x = tf_keras.layers.Conv2D(4, 3, strides=2)(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(num_classes)(x))


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    """A 12-class fp32 file: digits has 10 classes."""
    from nlighten_tf.export import tflite

    path = tmp_path_factory.mktemp("tiny") / "tiny12.tflite"
    return tflite.export(_tiny_model(12), path, "fp32").path
