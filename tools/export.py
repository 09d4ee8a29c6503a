"""Exports a Keras model to `.tflite` targets with classifier metadata and a sidecar JSON.

  python tools/export.py --model=efficientnet_lite0 --input_size=224 --targets=fp32,int8 \
      [--keras_model=trained.keras] [--data=digits] [--output_dir=exports]

Targets: fp32, fp32_sparse, float16, dynamic_int8, int8, int8_float_io, int8_sparse, int8_sparse_float_io
(the smallest file MediaPipe Tasks loads), edgetpu; and from LiteRT Quantizer (--quantizer=litert,
which also writes int8 and int8_float_io): int16x8, int4_weights, mixed (int8 with the most sensitive
ops promoted to int16 until --mixed_min_agreement with the float32 file holds on held-out examples).
Labels come from --data (or --labels=FILE); full-integer targets calibrate on --data's
training split with the model's own preprocessing. Prints each file's signatures and I/O.
Without data: --data=synthetic:bn[:N] calibrates on images synthesised from the model's own
BatchNorm statistics (docs/optimize.md, "Data-free compression"); labels then come from --labels.

  python tools/export.py --model=efficientnet_lite0 --weights=imagenet --data=folder:DIR --labels=FILE \
      --targets=mixed --quantizer=litert
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf.export.targets import TARGETS, get_target
from nlighten_tf.recipes import stage_types

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Model registry name (architecture and preprocessing).")
flags.DEFINE_string("keras_model", None, "A saved tf_keras model (.keras/.h5/SavedModel) to export instead of a fresh build.")
flags.DEFINE_integer("input_size", 224, "Input resolution when building --model.")
flags.DEFINE_string("weights", None, "Weights for --model (e.g. imagenet).")
flags.DEFINE_string("data", "digits", "Data spec for labels and int8 calibration.")
# As the recipe export stage declares them.
stage_types.define_flags(stage_types.get("export").keys, ["targets", "calibration_samples", "quantizer"] + [
    key.name for key in stage_types.EXPORT_QUANTIZER_KEYS if key.name.startswith("mixed_")])  # fmt: skip
flags.DEFINE_string("preprocessing", None, "Normalisation scheme (default: the model's registry scheme).")
flags.DEFINE_string("labels", None, "Text file with one label per line (default: the class names of --data).")
flags.DEFINE_enum("edgetpu_io", TARGETS["edgetpu"].io_type, list(stage_types.IO_TYPES),
                  "Input/output dtype of the edgetpu target.")  # fmt: skip
flags.DEFINE_string("output_dir", "exports", "Where the .tflite files and sidecar JSONs go.")
flags.DEFINE_string("name", None, "File stem (default: the model name).")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel chatter hides our output
    del argv
    from nlighten_tf.export import litert_backend

    try:
        targets = [get_target(t) for t in FLAGS.targets]
        for target in targets:
            litert_backend.resolve(FLAGS.quantizer, target)
        mixed = stage_types.mixed_config(FLAGS)
    except ValueError as error:
        return _fail(str(error))
    if FLAGS.keras_model and not Path(FLAGS.keras_model).exists():
        return _fail(f"--keras_model {FLAGS.keras_model}: no such file or directory")
    if FLAGS.labels and not Path(FLAGS.labels).is_file():
        return _fail(f"--labels {FLAGS.labels}: no such file")
    from nlighten_tf import io as atomic
    from nlighten_tf.errors import NlightenError

    try:
        atomic.check_output_dir(FLAGS.output_dir, "--output_dir")
    except NlightenError as error:
        return _fail(str(error))
    from nlighten_tf import data, models
    from nlighten_tf.export import metadata, tflite
    from nlighten_tf.models import registry

    try:
        scheme = data.resolve_scheme(FLAGS.preprocessing, FLAGS.model)
        data_free = data.parse_spec(FLAGS.data).kind == "synthetic"
        if data_free and not FLAGS.labels:
            return _fail(f"--data={FLAGS.data} synthesises images and has no class names: pass --labels=FILE")
        labels = Path(FLAGS.labels).read_text().splitlines() if FLAGS.labels else None
        if labels is None:
            labels = list(data.load_raw(FLAGS.data, "train", limit=1)[1].class_names)
        labels = [label for label in labels if label.strip()]
        if FLAGS.keras_model:
            model = _load_keras(FLAGS.keras_model)
        else:
            registry.info(FLAGS.model)
            model = models.build(
                FLAGS.model, input_shape=(FLAGS.input_size, FLAGS.input_size, 3), num_classes=len(labels),
                weights=FLAGS.weights,
            )  # fmt: skip
        size = tflite.input_size(model)
        classifier = metadata.from_scheme(labels, scheme, size, name=FLAGS.name or FLAGS.model)
        calibration = None
        if any(t.needs_calibration for t in targets):
            calibration = tflite.calibration_data(
                FLAGS.data, FLAGS.calibration_samples, size[0], preprocessing=scheme, keras_model=model
            )
        stem = FLAGS.name or (Path(FLAGS.keras_model).stem if FLAGS.keras_model else FLAGS.model)
        for target in targets:
            path = Path(FLAGS.output_dir) / f"{stem}_{target.name}.tflite"
            print(f"exporting {target.name} ({target.description}) ...", flush=True)
            result = tflite.export(
                model, path, target.name, representative_dataset=calibration, classifier=classifier,
                io_type=FLAGS.edgetpu_io if target.name == "edgetpu" else None,
                extra={"source": FLAGS.keras_model or FLAGS.model, "data": FLAGS.data}, quantizer=FLAGS.quantizer,
                mixed=mixed,
            )  # fmt: skip
            for note in result.notes:
                print(f"  note: {note}")
            print("  " + result.summary.replace("\n", "\n  "))
            print(f"wrote {result.path} ({result.size_bytes:,} bytes) and {result.sidecar}")
    except (NlightenError, ValueError, OSError) as error:
        return _fail(" ".join(str(error).split())[:1000])
    return 0


def _load_keras(path: str):
    from nlighten_tf.keras_io import load_keras

    try:
        return load_keras(path)
    except (OSError, ValueError, TypeError) as error:  # not HDF5/SavedModel, truncated, unknown layer
        raise ValueError(
            f"--keras_model {path}: not a loadable tf_keras model ({' '.join(str(error).split())[:300]})"
        ) from None


if __name__ == "__main__":
    app.run(main)
