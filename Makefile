# `make demo` and `make test` each set up .venv on a fresh machine, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Without a GPU, install the CPU torch first (the local wheel folder holds the CPU build) so pip never resolves a multi-GB CUDA build.
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q "torch==2.13.0"; fi
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m unlearn_sweep.demo

# The suite in two parts, both on every core (pytest-xdist): `test` everything but the real Ray
# sweeps, `test-slow` the sweeps (marked slow; .ci/run runs both).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15 -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15 -m slow

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
