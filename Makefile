# Every target bootstraps .venv from pyproject.toml first; nothing is installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo docs test lint typecheck generate import-protos bench bench-quick emulator clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sdm_async demo

# The documentation site, in strict mode (a warning fails the build), into site/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The docs come first: tests/test_docs.py reads the site they build.
test: $(STAMP) docs
	$(BIN)/ruff check sdm_async tests tools benchmarks examples
	$(BIN)/ruff format --check sdm_async tests tools benchmarks examples
	$(BIN)/mypy sdm_async tools examples
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check sdm_async tests tools benchmarks examples
	$(BIN)/ruff format --check sdm_async tests tools benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy sdm_async tools examples

# Regenerate protobuf modules, grpc stubs, .pyi, models, services and constants from protos/.
generate: $(STAMP)
	$(BIN)/python -m tools.codegen

# Rewrite protos/ from the reference descriptor set (only when the reference changes).
import-protos: $(STAMP)
	$(BIN)/python -m tools.import_protos ../shared/reference/strongdm-api-v1.binpb protos

emulator: $(STAMP)
	$(BIN)/sdm-async emulator

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
