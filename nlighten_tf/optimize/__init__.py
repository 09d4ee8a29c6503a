"""Optimization techniques as plain functions over Keras models (no YAML, no CLI here)."""
