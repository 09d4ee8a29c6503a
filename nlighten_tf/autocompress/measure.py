"""What `autocompress` measures: the target files it exports and their cost for one budget kind
(bytes, on-chip parameters, latency on the device, or MAdds of the graph), and which targets it
can measure."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf.autocompress import budgets
from nlighten_tf.export import targets as targets_lib
from nlighten_tf.models.complexity import count_madds

DENSE_TARGETS = tuple(name for name, target in targets_lib.TARGETS.items() if not target.sparse)
# int8 files with pruned kernels stored sparse: searched with per-kernel sparsity (`sparsity`), for
# size budgets only (sparse storage makes files smaller, not faster; MAdds do not count zeros).
SPARSE_TARGETS = tuple(n for n, t in targets_lib.TARGETS.items() if t.sparse and t.quantization == "full")


@dataclasses.dataclass
class Measurement:
    value: float  # in the budget kind's unit (KiB, ms, MAdds, MiB)
    ratio: float  # of the original model's cost, measured in the same run for latency


def representative(data: tf.data.Dataset, samples: int) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter's representative dataset: the first `samples` images of `data`, read once."""
    images = []
    for element in data:
        batch = element[0] if isinstance(element, tuple | list) else element
        images.extend(np.asarray(batch, np.float32))
        if len(images) >= samples:
            break
    if not images:
        raise ValueError("calibration data for the export is empty")
    images = images[:samples]

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None]]

    return generate


class CostMeter:
    """Exports and measures models for one budget kind on the target file / device."""

    def __init__(self, config: Any, calibration: tf.data.Dataset, workdir: str | os.PathLike[str]):
        self.config = config
        self.kind = config.parsed_budget.kind
        self.target = config.measured_target
        self.calibration = representative(calibration, config.calibration_samples) if self.kind != "madds" or \
            targets_lib.get_target(self.target).needs_calibration else None  # fmt: skip
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.original_file: Path | None = None
        self.original: Measurement | None = None
        self._count = 0

    def export(self, model: tf_keras.Model, path: str | os.PathLike[str]) -> bytes:
        from nlighten_tf import io as atomic
        from nlighten_tf.export import tflite

        calibration = self.calibration if targets_lib.get_target(self.target).needs_calibration else None
        flatbuffer, _ = tflite.convert(model, self.target, calibration, quantizer=self.config.quantizer)
        atomic.write_bytes(path, flatbuffer)
        return flatbuffer

    def _file(self, model: tf_keras.Model) -> Path:
        self._count += 1
        path = self.workdir / f"candidate{self._count}.tflite"
        self.export(model, path)
        return path

    def _value_of_file(self, path: Path) -> float:
        if self.kind == "size_kb":
            return path.stat().st_size / budgets.UNITS["size_kb"]
        from nlighten_tf.edgetpu import compat

        return compat.analyse(os.fspath(path)).param_bytes / budgets.UNITS["edgetpu_sram_mib"]

    def latencies(self, files: Sequence[Path]) -> list[float]:
        """Median ms of each file, timed interleaved in one run on the device."""
        if self.config.device == "host":
            from nlighten_tf.bench.latency import measure_interleaved

            runs = measure_interleaved(files, threads=self.config.threads, runs=self.config.latency_runs, warmup=5)
            return [r.median_ms for r in runs]
        from nlighten_tf.bench import devices

        run = devices.run_models(self.config.device, files, threads=self.config.threads, runs=5, warmup=1)
        return [float(np.median(m["times_ms"])) for m in run.models]

    def start(self, model: tf_keras.Model) -> Measurement:
        """Measures the original model (the reference of relative budgets)."""
        if self.kind == "madds":
            self.original = Measurement(float(count_madds(model)), 1.0)
            return self.original
        self.original_file = self.workdir / "original.tflite"
        self.export(model, self.original_file)
        if self.kind == "latency_ms":
            value = self.latencies([self.original_file])[0]
        else:
            value = self._value_of_file(self.original_file)
        self.original = Measurement(value, 1.0)
        return self.original

    def measure(self, models: Sequence[tf_keras.Model], files: Sequence[Path] | None = None) -> list[Measurement]:
        """Each model's cost (exported here unless `files` are given)."""
        assert self.original is not None, "call start() first"
        if self.kind == "madds":
            return [Measurement(float(count_madds(m)), count_madds(m) / self.original.value) for m in models]
        files = list(files) if files is not None else [self._file(m) for m in models]
        if self.kind == "latency_ms":
            times = self.latencies([self.original_file, *files])
            return [Measurement(t, t / times[0]) for t in times[1:]]
        values = [self._value_of_file(f) for f in files]
        return [Measurement(v, v / self.original.value) for v in values]
