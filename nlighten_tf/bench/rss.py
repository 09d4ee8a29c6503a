"""Child process for `latency.peak_rss`: `python -m nlighten_tf.bench.rss MODEL RUNTIME XNNPACK THREADS RUNS`.

Prints one JSON line {"peak_rss_mb", "model_rss_mb"}. Imports only the chosen runtime."""

from __future__ import annotations

import json
import resource
import sys


def _rss_mb() -> float:
    # VmHWM (peak RSS of this address space) rather than ru_maxrss: on Linux ru_maxrss survives
    # fork + exec, so a child would report its parent's peak.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main(argv: list[str]) -> None:
    model, runtime, xnnpack, threads, runs = argv[1], argv[2], argv[3] == "1", int(argv[4]), int(argv[5])
    from nlighten_tf.litert import runtime as runtime_lib

    runtime_lib._interpreter_module(runtime)  # the runtime's own memory is not the model's
    baseline = _rss_mb()
    loaded = runtime_lib.load(model, runtime=runtime, xnnpack=xnnpack, threads=threads, fallback=False)
    for _ in range(runs):
        loaded.interpreter.invoke()
    peak = _rss_mb()
    print(json.dumps({"peak_rss_mb": peak, "model_rss_mb": peak - baseline}))


if __name__ == "__main__":
    main(sys.argv)
