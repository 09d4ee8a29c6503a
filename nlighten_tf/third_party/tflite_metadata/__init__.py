"""The TFLite metadata schema (`metadata_schema.fbs` of tensorflow/tflite-support 0.4.4) as the
FlatBuffers-generated Python module, unchanged; README.md says where it comes from and why it is
vendored, LICENSE is its Apache-2.0 licence."""
