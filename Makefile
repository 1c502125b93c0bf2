# One command to set up and run the demo, one to set up and run every test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-ha test lint bench screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Sing needs $(PYTHON) (pymesos does not run on newer Pythons)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# http-parser (pymesos' dependency) ships a C extension that does not compile on 3.11;
	# CC=true makes its build fall back to the pure-Python parser pymesos supports.
	CC=true LDSHARED=true $(BIN)/python -m pip install -q "http-parser==0.9.0"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

# The demo backend runs in the background while the terminal dashboard is open; quitting it stops both.
demo: setup
	$(BIN)/sing demo --port 7099 --tui

# Two backends, a private ZooKeeper and a shared local cluster: leader election and fail-over.
demo-ha: setup
	bash scripts/demo-ha.sh

# Regenerate screenshots/*.svg from the real app on a demo backend.
screenshots: setup
	$(BIN)/python -m sing_tui.screenshots screenshots

test: setup
	bash scripts/ensure-services.sh
	$(BIN)/python -m ruff check sing_backend sing_tui tests bench
	$(BIN)/python -m pytest -q

# Every benchmark of the README's table, one after the other (about 45 minutes here).
bench: setup
	bash scripts/ensure-services.sh
	$(BIN)/python -m bench.launch_latency
	$(BIN)/python -m bench.api_latency
	$(BIN)/python -m bench.deploy_turnover
	$(BIN)/python -m bench.healthcheck_load
	$(BIN)/python -m bench.schedules
	$(BIN)/python -m bench.state_write
	$(BIN)/python -m bench.failover
	$(BIN)/python -m bench.standby_writes
	$(BIN)/python -m bench.history_offload --runs 3
	$(BIN)/python -m bench.history_backlog
	$(BIN)/python -m bench.history_scale
	$(BIN)/python -m bench.mesos_scale
	$(BIN)/python -m bench.executor_artifacts
	$(BIN)/python -m bench.executor_logs
	$(BIN)/python -m bench.tui_scale
	$(BIN)/python -m bench.tui_log_latency

clean:
	rm -rf $(VENV)
