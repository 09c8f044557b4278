# Verbs for people (`make dev`, `make test`, `make bench`); each installs into .venv first, so they work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint install bench screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/stepup-bff dev

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest

# The BFF's routes against a bare FastAPI route, side by side in one run (bench/run.py; wrk if installed).
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The README's screenshots (docs/screenshot*.png): the browser tests that reach those states take them again
# (tests/browser/conftest.py, README_SCREENSHOTS). Run after a change of the SPA's look.
screenshots: $(STAMP)
	UPDATE_README_SCREENSHOTS=1 $(BIN)/pytest -q -p no:cacheprovider \
		"tests/browser/test_spa.py::test_totp_step_up_confirms_the_telegram_retries_once_with_the_same_key_and_each_telegram_is_confirmed" \
		"tests/browser/test_native_sign_in.py::test_the_form_a_wrong_password_and_then_signing_in" \
		"tests/browser/test_sessions_panel.py::test_the_panel_lists_my_sessions_and_signs_one_out_then_everything"
