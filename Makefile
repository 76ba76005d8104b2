# reslab: `make install` once, then `make train` / `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: install train test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install $(TORCH_PIN)
	$(BIN)/pip install -e ".[dev]"

train: $(BIN)/python
	$(BIN)/python train.py $(ARGS)

test: $(BIN)/python
	$(BIN)/python -m pytest

test-fast: $(BIN)/python
	$(BIN)/python -m pytest -m "not slow"

lint: $(BIN)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/python
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
