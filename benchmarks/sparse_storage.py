"""How the converter stores one pruned int8 kernel: bytes of the file against the kernel's
sparsity, for kernel shapes of the quickstart network, on the int8_sparse and
int8_sparse_float_io targets (the dense int8 file as reference). The byte model the
auto-compression search costs sparsity with (`nlighten_tf.autocompress.sparsity.stored_bytes`)
is printed beside each measurement.

One layer per model (input 4x4xC, random weights, the smallest |w| zeroed), so the file's
change against the dense file is that kernel's change:

  python benchmarks/sparse_storage.py [--output_dir=benchmarks/results]

Writes sparse_storage.json / .md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sparsities", ["0", "0.3", "0.5", "0.6", "0.7", "0.8", "0.9", "0.95"], "Fractions of zeros measured.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where sparse_storage.{json,md} go.")

# (kind, input channels, output channels): a wide expansion (uint8 indices), a wide projection
# (uint16 indices), a narrow 1x1 convolution, the 3x3 stem and the classifier of the quickstart.
SHAPES = [("conv1x1", 144, 864), ("conv1x1", 864, 144), ("conv1x1", 32, 16), ("conv3x3", 3, 32), ("dense", 512, 10)]
TARGETS = ("int8_sparse", "int8_sparse_float_io")


def _model(kind: str, inputs: int, outputs: int):
    import tf_keras

    image = tf_keras.Input((4, 4, inputs))
    if kind == "dense":
        x = tf_keras.layers.Dense(outputs, name="layer")(tf_keras.layers.GlobalAveragePooling2D()(image))
    else:
        x = tf_keras.layers.Conv2D(outputs, 3 if kind == "conv3x3" else 1, padding="same", name="layer")(image)
    return tf_keras.Model(image, x)


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    import math

    import numpy as np

    from nlighten_tf.autocompress.sparsity import magnitude_mask, stored_bytes
    from nlighten_tf.export import tflite
    from nlighten_tf.litert import flatbuffer

    start = time.time()
    rng = np.random.default_rng(0)
    rows = []
    for kind, inputs, outputs in SHAPES:
        model = _model(kind, inputs, outputs)
        layer = model.get_layer("layer")
        kernel, bias = rng.normal(size=layer.kernel.shape).astype(np.float32), layer.get_weights()[1]
        images = [rng.normal(size=(1, 4, 4, inputs)).astype(np.float32) for _ in range(8)]
        positions = math.prod(kernel.shape[:-2])
        dense = {}
        for sparsity in [float(s) for s in FLAGS.sparsities]:
            layer.set_weights([kernel * magnitude_mask(kernel, sparsity), bias])
            row = {"kernel": f"{kind} {inputs}->{outputs}", "weights": int(kernel.size), "sparsity": sparsity}
            for target in ("int8", *TARGETS):
                flat, _ = tflite.convert(model, target, lambda images=images: ([i] for i in images))
                dense.setdefault(target, len(flat))
                graph = flatbuffer.parse(flat, target)
                stored_sparse = any(t.sparsity is not None for t in graph.tensors)
                row[f"{target}_bytes"] = len(flat)
                if target != "int8":
                    row[f"{target}_vs_dense"] = len(flat) - dense[target]
                    row[f"{target}_sparse"] = stored_sparse
            model_bytes = stored_bytes(positions * outputs, inputs, outputs, sparsity)
            row["byte_model_vs_dense"] = model_bytes - kernel.size
            rows.append(row)
            print(row, flush=True)
    payload = {"shapes": SHAPES, "targets": TARGETS, "rows": rows}
    common.write_results(FLAGS.output_dir, "sparse_storage", payload, _table(rows), start)
    return 0


def _table(rows: list[dict]) -> str:
    from nlighten_tf.render import markdown_table

    header = (
        "Bytes of one pruned int8 kernel in the file against its sparsity (`benchmarks/sparse_storage.py`, TF "
        "2.21 converter): `*_vs_dense` is the file's size minus the same model's file at 0% zeros; `*_sparse` "
        "whether the file stores the kernel sparse (DENSIFY); `byte_model_vs_dense` the search's byte model "
        "(`autocompress.sparsity.stored_bytes`)."
    )
    columns = ["kernel", "weights", "sparsity", "int8_bytes", "int8_sparse_vs_dense", "int8_sparse_sparse",
               "int8_sparse_float_io_vs_dense", "int8_sparse_float_io_sparse", "byte_model_vs_dense"]  # fmt: skip
    return f"{header}\n\n{markdown_table(rows, columns)}\n"


if __name__ == "__main__":
    app.run(main)
