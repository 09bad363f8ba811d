# The README's two commands are `make run` and `make test`. Both install what
# they need first: a virtual environment with the package, and (for tests) the
# Go builds of kube-apiserver, etcd and kubectl, cached outside the repository.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DB     ?= $(HOME)/.local/share/remstate/state.db

.PHONY: run test check lint typecheck cluster controlplane browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the main job on the embedded store (no cluster needed)
run: $(STAMP)
	$(BIN)/remstate --store sqlite://$(DB) demo

## controlplane: build kube-apiserver, etcd and kubectl from their Go modules (cached)
controlplane:
	hack/build-controlplane.sh >/dev/null

## browser: Debian's Chromium for the dashboard's browser tests (Playwright drives
## /usr/bin/chromium; its own browser download is never used), installed when missing
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium from Debian's packages (the dashboard's browser tests)"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

## lint / typecheck: ruff, mypy --strict on src/, and the layer contract
lint: $(STAMP)
	$(BIN)/ruff check src tests hack
	$(BIN)/ruff format --check src tests hack

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: everything CI runs
test: $(STAMP) controlplane browser lint typecheck
	$(BIN)/pytest

## cluster: start a local control plane and print how to use it and its kubectl (Ctrl-C stops it)
cluster: $(STAMP) controlplane
	$(BIN)/python -m remstate.testing.controlplane up

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

## bench: remstate against its peers on a local control plane; every figure a ratio
.PHONY: bench
bench: $(STAMP) controlplane
	$(BIN)/python -m bench
