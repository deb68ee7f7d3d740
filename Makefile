# Two commands on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: venv reproduce test lint bench clean

$(BIN)/lecun1989: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/lecun1989

reproduce: venv  ## set up, then reproduce the paper on the default data
	$(BIN)/lecun1989 reproduce $(ARGS)

test: venv  ## set up, then lint and run the whole test suite
	$(BIN)/ruff check lecun1989 tests benchmarks examples studies
	$(BIN)/python -m pytest -n 2 $(ARGS)

bench: venv
	$(BIN)/python benchmarks/engine_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
