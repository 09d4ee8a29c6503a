"""LiteRT (TFLite) access shared by export, bench and edgetpu: reading and validating `.tflite`
flatbuffers (`flatbuffer`) and loading them into an interpreter (`runtime`).

A leaf: imports nothing from the package above `errors`, so every subpackage that produces or
measures a `.tflite` can use it without importing each other. Importing it loads no TensorFlow.
"""
