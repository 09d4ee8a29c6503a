"""Shared test set-up: legacy Keras must be selected before anything imports TensorFlow."""

import nlighten_tf  # noqa: F401
