# `make demo` and `make test` work on a fresh clone: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch/torchvision are pinned for local development and CI (they come from this machine's disk);
# the package itself accepts any torch>=2.1.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint benchmark docs clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip 'setuptools<81' wheel
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet --no-build-isolation visdom
	$(PIP) install --quiet -e '.[dev]' $(TORCH_PIN)
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) examples/quickstart.py

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

benchmark: venv
	$(PY) benchmarks/overhead.py

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) runs logs
