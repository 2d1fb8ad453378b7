# Two commands do everything (see README.md):
#   make lab    bring up two simulated Sparks, run site.yml and validate-link.yml
#   make test   lint, unit tests, molecule (what CI runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
LAB_INVENTORY ?= inventory/lab
# options of scripts/bench_perf.py for `make bench` (--help lists them)
BENCH_ARGS ?=
DAY_TWO := status.yml start.yml stop.yml restart.yml diagnose.yml teardown.yml
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv docker promtool lab-up lab lab-down lab-status lab-day-two lab-faults lab-discover lint unit mutants rules molecule test clean bench-link bench

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(BIN)/.stamp: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: Python >= 3.11 is needed" >&2; exit 1; }
	@echo "==> virtual environment $(VENV) (requirements.txt)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

venv: $(BIN)/.stamp ## create the virtual environment (reused when requirements.txt is unchanged)

docker: ## make sure a Docker engine answers (installs docker.io on a bare machine)
	@bash scripts/ensure-docker.sh

promtool: ## make sure promtool answers (installs Debian's prometheus package on a bare machine)
	@bash scripts/ensure-promtool.sh

lab-up: venv docker ## build the lab image (if its recipe changed) and start the lab nodes
	$(BIN)/python lab/spark_lab.py up --inventory $(LAB_INVENTORY)

lab: lab-up ## THE MAIN JOB: lab up, its stand-ins, site.yml, validate-link.yml, print the report
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) lab/prepare.yml
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) site.yml
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) validate-link.yml
	@echo "==> link report: $(CURDIR)/reports/link-latest.md (also .json, .png)"

lab-down: venv ## remove the lab nodes, their network and cables
	$(BIN)/python lab/spark_lab.py down --inventory $(LAB_INVENTORY)

lab-status: venv ## show the lab nodes and their rails
	$(BIN)/python lab/spark_lab.py status --inventory $(LAB_INVENTORY)

lab-day-two: lab ## make lab, then every day-two test (status, diagnose, watchdog, restart, memory guard, teardown + site.yml again)
	SPARK_DAY_TWO=1 SPARK_DAY_TWO_FULL=1 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=0 tests/integration/test_day_two.py

lab-faults: venv docker ## on a running lab: head killed, worker killed, five rounds in a row (reports/faults-latest.json)
	SPARK_FAULT_ROUNDS=5 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=0 --hosts=ansible://spark \
	  --ansible-inventory=$(LAB_INVENTORY) tests/integration/test_faults.py -k killed_rank

lab-discover: venv docker ## fresh lab: discover.yml from mgmt addresses only, site.yml with its inventory, cable moved
	$(BIN)/python lab/spark_lab.py down --inventory $(LAB_INVENTORY)
	$(BIN)/python lab/spark_lab.py up --inventory $(LAB_INVENTORY)
	SPARK_DISCOVER_FULL=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/integration/test_discover.py

lint: venv ## yamllint, ansible-lint (production profile), syntax checks
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) --syntax-check site.yml validate-link.yml bench.yml $(DAY_TWO) lab/prepare.yml
	$(BIN)/ansible-playbook -i inventory/example --syntax-check site.yml validate-link.yml bench.yml $(DAY_TWO)
	$(BIN)/ansible-playbook -i inventory/example-mgmt --syntax-check discover.yml

unit: venv promtool ## unit tests of library/, module_utils/ and the lab tool (promtool rule tests included), with line coverage (floor in .coveragerc)
	@mkdir -p .cache
	$(BIN)/python -m coverage run -m pytest -q tests/unit tests/lab
	$(BIN)/python -m coverage report

mutants: venv ## mutation testing of the pure module_utils files (mutmut; slow, not in CI) -> docs/testing.md
	$(BIN)/pip install -q -r requirements-mutants.txt
	$(BIN)/python scripts/mutants.py

rules: venv promtool ## promtool check rules/config and test rules; the Grafana dashboard matches the rules
	$(BIN)/python scripts/monitoring_files.py test
	$(BIN)/python scripts/monitoring_files.py dashboard --check

molecule: venv docker ## the lab end to end: converge, idempotence, verify (testinfra), faults
	$(BIN)/molecule test --all

test: venv docker promtool ## everything CI runs: lint and unit side by side (output kept per target), then molecule
	$(MAKE) --no-print-directory -j2 --output-sync=target lint unit
	$(MAKE) --no-print-directory molecule

clean: lab-down ## lab down and remove the venv
	rm -rf $(VENV) .cache

bench-link: venv ## benchmark: validate-link duration and TCP vs hand-run iperf3 (lab up) -> docs/link-benchmark.md
	$(BIN)/python scripts/bench_link.py

bench: venv ## benchmark: iperf3 (rail 0, both rails), weights fan-out, image ship, no-op site.yml (lab up) -> docs/performance.md; BENCH_ARGS="--noop-only --baseline REF --inventory inventory/lab3 --rounds 2": the no-op site.yml alone, this tree and commit REF in turns
	$(BIN)/python scripts/bench_perf.py $(BENCH_ARGS)
