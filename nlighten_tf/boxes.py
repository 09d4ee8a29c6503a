"""Box formats and the detection post-process op: the one place that names them.

Formats are `keras_cv.bounding_box` names and every conversion goes through
`keras_cv.bounding_box.convert_format`; box encoding (anchor deltas) and decoding (+ NMS) live
in `nlighten_tf.models.detection`. A leaf: imports nothing from the package, so data loaders,
models, export, benchmarks and tasks can all read it.
"""

from __future__ import annotations

# What every detection data set yields (`nlighten_tf.data.load` of shapes, tfds:coco, tfds:voc):
# absolute pixels of the S x S model input.
ANNOTATION_FORMAT = "xyxy"
# Anchors and decoded boxes inside the detector, absolute pixels: the order TensorFlow's NMS ops use.
ANCHOR_FORMAT = "yxyx"
# What the anchor box coder (`models.detection.encode_boxes`) computes deltas in: centre, size.
CODER_FORMAT = "center_yxhw"
# TFDS `bbox` features: relative (0..1) ymin, xmin, ymax, xmax.
TFDS_FORMAT = "rel_yxyx"
# The boxes output of `POSTPROCESS_OP`: relative ymin, xmin, ymax, xmax (not clipped).
POSTPROCESS_OUTPUT_FORMAT = "rel_yxyx"

# TFLite's detection post-process (decode + NMS), a custom op at the end of exported detectors;
# Edge TPU leaves it on the CPU and MediaPipe's ObjectDetector requires it.
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
