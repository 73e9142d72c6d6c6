# Two commands do everything on a fresh machine: `make demo` (the local closed loop) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint synth package-size bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(BIN)/loopml demo

test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy layers/core/loopml_core infra app.py
	@# every function's module is named `handler`, as Lambda loads it: check them one at a time
	@for handler in functions/*/handler.py; do $(BIN)/mypy $$handler || exit 1; done

node_modules/.bin/cdk:
	npm install --no-save --no-audit --no-fund aws-cdk@2

synth: install node_modules/.bin/cdk
	PATH="$(CURDIR)/$(BIN):$$PATH" node_modules/.bin/cdk synth --quiet

package-size: install
	$(BIN)/python benchmarks/package_size.py

bench: install
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_serving.py
	$(BIN)/python benchmarks/bench_local_api.py
	$(BIN)/python benchmarks/bench_batch.py
	$(BIN)/python benchmarks/bench_validation.py
	$(BIN)/python benchmarks/bench_drift.py --with-evidently
	$(BIN)/python benchmarks/bench_capture.py
	$(BIN)/python benchmarks/bench_monitoring.py
	$(BIN)/python benchmarks/bench_loop.py

clean:
	rm -rf $(VENV) cdk.out .build .loopml node_modules
