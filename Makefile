# The README's two commands: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
PYTEST_ARGS ?=

.PHONY: setup test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	# The CPU wheel first: anything that lets pip choose torch would pull CUDA packages.
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	# tritonserver 2.51 for the serving tests (kdtool triton). Every nvidia-pytriton release declares numpy<2;
	# only its server binary is used, so it goes in without dependencies. Its Python-backend stub needs
	# NumPy 1.x (it garbles tensors under NumPy 2): kept apart in $(VENV)/triton-numpy1 (kdtool.deploy.tritonserver)
	$(PIP) --no-deps nvidia-pytriton
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --upgrade --target $(VENV)/triton-numpy1 numpy==1.26.4
	touch $@

# pytest exits 5 when it collected nothing: that must fail, not pass quietly.
# ruff first: a lint or import-order finding fails the run before the suite starts.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

demo: setup
	$(BIN)/kdtool demo -o demo-output

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-output
