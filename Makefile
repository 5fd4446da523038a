# make test   create .venv, install pinned torch/torchvision and the package (building the op), run the tests
# make bench  the op benchmark (native kernels vs the PyTorch reference)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
NATIVE_SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cuda/*.cu)
PYTEST_ARGS ?=

.PHONY: install test bench clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet setuptools wheel ninja
	$(PIP) install --quiet $(TORCH_PINS)
	touch $@

$(VENV)/.installed: $(VENV)/.torch $(NATIVE_SOURCES)
	$(PIP) install --quiet --no-build-isolation -e '.[test]'
	$(PY) -m ddetr_plugin.collect_env
	touch $@

install: $(VENV)/.installed

# pytest exits 5 when it collects no test: not a failure of the build.
test: install
	$(PY) -m pytest tests $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench: install
	$(PY) tools/benchmark_op.py

clean:
	rm -rf $(VENV) build *.egg-info ddetr_plugin/_C*.so
