#!/usr/bin/env bash
# `make test`: lint, import contract, unit and integration tests of every service against
# real servers, then the end-to-end suite against a native stack it starts itself.
# Hermetic: per-run databases, streams and key prefixes (see videoflix_testing.plugin).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=$(command -v uv || echo "python3 -m uv")
RUN="$UV run --frozen --all-packages"
start=$(date +%s)

echo "== servers (PostgreSQL, Redis, NATS): configured ones, or private instances"
eval "$($RUN python -m deploy.devstack infra --data-dir .data/test-infra --print-env)"

echo "== ruff"
$RUN ruff check .
$RUN ruff format --check .
echo "== types (mypy --strict)"
$RUN mypy
echo "== import contract"
$RUN lint-imports
echo "== dependencies: uv.lock matches the pyproject files; each package alone runs"
$UV lock --check --quiet
$RUN python -m deploy.package_check --uv "$UV"

echo "== tests"
mkdir -p test-artifacts
$RUN pytest "$@"
echo "== make test finished in $(( $(date +%s) - start ))s"
