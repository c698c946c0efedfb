# The two commands: `make demo` and `make test` (both set up everything they need first).
UV := scripts/uv
export UV_PYTHON_PREFERENCE := system

.PHONY: setup test-deps demo test lint typecheck pytest bench clean

setup:
	$(UV) sync --all-packages --frozen

test-deps: setup
	scripts/install-test-deps.sh
	scripts/setup-inference-backends.sh

demo: setup
	$(UV) run --frozen python scripts/demo.py

lint: setup
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .

typecheck: setup
	$(UV) run --frozen mypy

pytest: test-deps
	$(UV) run --frozen pytest

test: lint typecheck pytest

bench: test-deps
	$(UV) run --frozen python bench/host_overhead.py
	$(UV) run --frozen python bench/memory.py
	$(UV) run --frozen python bench/inference.py

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache conformance-results
