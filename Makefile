# clustersync developer commands.  Everything runs from a local virtualenv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv run cluster cluster-node test bench chaos clean

help:
	@echo "make run      set up and run one node (foreground, default config)"
	@echo "make cluster  run three linked nodes locally (ctrl-C stops all)"
	@echo "make test     run the test suite"
	@echo "make bench    run the benchmarks, write docs/benchmarks.md (ARGS=\"--only PART\": one part)"
	@echo "make chaos    run the fault-injection suite, write docs/reliability.md"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/twistd --nodaemon --pidfile= clustersync $(ARGS)

cluster: $(STAMP)
	$(BIN)/python -m clustersync.cli.devcluster $(ARGS)

cluster-node: $(STAMP)
	$(BIN)/python -m clustersync.cli.devcluster --only $(NODE) $(ARGS)

# The backplane's tests on real nats-server processes need Twisted's
# asyncio reactor (nats-py runs on asyncio): a second trial run, same command.
test: $(STAMP)
	$(BIN)/trial --jobs=2 tests && $(BIN)/trial --reactor=asyncio tests.test_backplane_nats

bench: $(STAMP)
	$(BIN)/python -m clustersync.bench $(ARGS)

# The full fault-injection suite (3 twistd processes, loopback, ~2 minutes);
# its fast part (tests/chaos/test_fast.py) runs in `make test`.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.run --write docs/reliability.md

clean:
	rm -rf $(VENV) _trial_temp* build *.egg-info
