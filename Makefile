# Videoflix developer commands. `make up` runs the stack natively, `make test` runs every test.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen --all-packages

.PHONY: help install up down status demo test lint package-check format bench routes privileges k8s clean

help:
	@echo "make up      run the whole stack natively (installs what is missing); Ctrl-C stops it"
	@echo "             OBSERVE=1: with Prometheus scraping every process (docs/OBSERVABILITY.md)"
	@echo "make down    stop a stack started by make up (from another terminal)"
	@echo "make status  health of every process of a running stack"
	@echo "make demo    upload sample videos to a running stack and wait until they play"
	@echo "make test    lint, import contract, every service's tests and the end-to-end suite"
	@echo "make package-check  each package declares what it imports and runs installed alone"
	@echo "make bench   performance benchmarks (not part of make test)"
	@echo "make format  apply ruff's formatting and fixes"
	@echo "make routes  regenerate gateway configs from gateway/routes.toml"
	@echo "make privileges  regenerate compose's NATS/Redis/PostgreSQL users from videoflix_shared/access.py"
	@echo "make k8s     regenerate deploy/k8s's settings and dev server configs from compose (docs/KUBERNETES.md)"

# `make install` (and so `make test`, CI) installs Debian's prometheus too: its promtool
# checks the configuration, and a test runs it. `make up` installs it only with OBSERVE=1.
install:
	@INSTALL_OBSERVE=1 bash deploy/install.sh

up:
	@INSTALL_OBSERVE=$(if $(filter 1,$(OBSERVE)),1,0) bash deploy/install.sh
	$(RUN) python -m deploy.devstack up $(if $(filter 1,$(OBSERVE)),--observe)

down:
	$(RUN) python -m deploy.devstack down

status:
	$(RUN) python -m deploy.devstack status

demo:
	$(RUN) python -m deploy.demo

test: install
	@bash deploy/test.sh

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

package-check:
	$(UV) lock --check
	$(RUN) python -m deploy.package_check --uv "$(UV)"

format:
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

routes:
	$(RUN) python -m gateway.generate write

privileges:
	$(RUN) python -m deploy.privileges write

k8s:
	$(RUN) python -m deploy.kube write

bench:
	@INSTALL_BENCH=1 bash deploy/install.sh
	@bash tests/bench/run.sh

clean:
	rm -rf .data test-artifacts
