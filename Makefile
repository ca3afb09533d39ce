# Two commands a new machine needs:  make demo  (set up, run the whole chain on generated data)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEOPLE ?= 10000
SEED ?= 1
DEMO ?= demo

.PHONY: demo test test-fast bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,spark]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/carelink synth --people $(PEOPLE) --seed $(SEED) --out $(DEMO)/data
	$(BIN)/carelink run $(DEMO)/data/pipeline.yaml --workspace $(DEMO)/workspace --truth $(DEMO)/data/truth.csv

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not spark"

bench: $(STAMP)
	$(BIN)/python bench/febrl4.py

lint: $(STAMP)
	$(BIN)/ruff check carelink tests bench

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
