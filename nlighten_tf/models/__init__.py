"""Keras model zoo: EfficientNet-B/Lite/EdgeTPU, sparse-ready MobileNetV2 and EfficientDet-D/Lite detectors."""

from nlighten_tf.models.complexity import count_madds, count_params
from nlighten_tf.models.registry import ModelInfo, build, info, names

__all__ = ["ModelInfo", "build", "count_madds", "count_params", "info", "names"]
