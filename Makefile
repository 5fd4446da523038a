# make train  create .venv, install pinned torch/torchvision and the package (building the op), then train
#             and evaluate the quick-start config on the built-in shapes dataset into output/quickstart
# make test   the same set-up, then the tests
# make bench  the op benchmark (native kernels vs the PyTorch reference)
# make gpu-check  on a machine with a CUDA GPU and its own python3/torch: install .whl/ wheels, build, run the
#             CUDA tests and the op and model benchmarks into benchmarks/gpu-<device>.md (tools/gpu_check.py);
#             exits non-zero without a GPU
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
NATIVE_SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cuda/*.cu)
PYTEST_ARGS ?=

.PHONY: install train test bench gpu-check clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet setuptools wheel ninja
	$(PIP) install --quiet $(TORCH_PINS)
	touch $@

# the "pictures" extra (matplotlib) draws output/quickstart/training_curves.png
$(VENV)/.installed: $(VENV)/.torch $(NATIVE_SOURCES)
	$(PIP) install --quiet --no-build-isolation -e ".[pictures]"
	$(PY) -m ddetr_plugin.collect_env
	touch $@

$(VENV)/.test-extras: $(VENV)/.torch requirements-test.txt
	$(PIP) install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) tools/train_net.py --config-file configs/quickstart/shapes.yaml OUTPUT_DIR output/quickstart

# pytest exits 5 when it collects no test: not a failure of the build.
test: install $(VENV)/.test-extras
	$(PY) -m pytest tests $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench: install
	$(PY) tools/benchmark_op.py

# The machine's own python3 and torch, not the venv: the check builds against what it finds.
gpu-check:
	$(PYTHON) tools/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info ddetr_plugin/_C*.so
