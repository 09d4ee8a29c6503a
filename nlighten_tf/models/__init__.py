"""Keras model zoo: EfficientNet-B/Lite/EdgeTPU, sparse-ready MobileNetV2 and EfficientDet-D/Lite detectors."""

# Importing the family modules registers their variants (models/registry.py imports no family).
from nlighten_tf.models import edgetpu, efficientdet, efficientnet, heads, mobilenet_v2  # noqa: F401
from nlighten_tf.models.complexity import count_madds, count_params
from nlighten_tf.models.registry import ModelInfo, build, info, names

__all__ = ["ModelInfo", "build", "count_madds", "count_params", "info", "names"]
