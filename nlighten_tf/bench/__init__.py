"""Measuring what ships: latency, accuracy, agreement across runtime paths, `.tflite` inspection and client checks."""
