# Two entry points (see README): `make course` and `make test`.
# Both create .venv from the repository's own files first; nothing else is assumed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup course test clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The whole course, notebooks 00.. in order, on the default profile
# (gpu with CUDA, else cpu; override with MMGEO_PROFILE=cpu make course).
course: setup
	$(BIN)/mmgeo course

# Lint and format check (ruff), then the unit tests and every notebook under nbval, on the smoke profile.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MMGEO_PROFILE=smoke $(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
