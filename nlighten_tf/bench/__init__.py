"""Measuring what ships: runtimes, latency, accuracy, inspection and reports."""
