# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_work
# pytest-xdist workers for make test (0: one process)
TEST_WORKERS ?= 2
LINT_PATHS := universal_embedding tests benchmarks convert_to_tfrecord_from_file.py

.PHONY: install install-onnx install-test demo test lint clean gpu-wheels

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# export --format=onnx and onnxruntime; jax2onnx without its declared dependencies (see the file)
$(VENV)/.installed-onnx: $(VENV)/.installed requirements-onnx.txt requirements-nodeps.txt
	$(PY) -m pip install -q -r requirements-onnx.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-onnx requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-onnx: $(VENV)/.installed-onnx

install-test: $(VENV)/.installed-test

demo: install
	$(PY) -m universal_embedding.demo --workdir=$(DEMO_DIR)

test: install-test
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

lint: install-test
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

clean:
	rm -rf $(VENV) $(DEMO_DIR)

# Wheels the lent GPU machine lacks (it has jax, flax, optax, orbax, torch, timm; no
# TensorFlow, ml_collections or clu), for benchmarks/gpu_run.sh: versions from requirements.txt.
GPU_WHEELS := ml-collections
GPU_PLATFORMS := $(foreach n,manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 \
	manylinux1,--platform $(n)_x86_64)

gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	for p in $(GPU_WHEELS); do \
	  pin=$$(grep -i "^$$p==" requirements.txt) || { echo "$$p: no pin in requirements.txt"; exit 1; }; \
	  $(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	    --implementation cp $(GPU_PLATFORMS) -d .whl "$$pin" || exit 1; \
	done
	du -ch .whl/*.whl
