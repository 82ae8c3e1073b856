#!/usr/bin/env bash
# `make bench`: every benchmark under tests/bench/ (bench_*.py), one after the other so they
# do not compete for the 2 cores. Each compares against a reference measured in the same run
# and prints its own table; the output is also kept in test-artifacts/bench/.
# Run one: `make bench BENCH=streaming` (matches bench_<name>.py). The benchmarks:
# auth_flood (token refresh during a register flood), bitrate (content-aware ladder vs the
# fixed one, issue 19), catalog_list, films (chunk-parallel
# transcoding, issue 17), streaming, transcode, upload_memory, tus_upload (resumable upload
# vs the single request), worker_memory (a transcoder worker's peak against the memory limit
# of deploy/k8s, issue 21).
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=$(command -v uv || echo "python3 -m uv")
RUN="$UV run --frozen --all-packages --group bench"  # deploy/install.sh INSTALL_BENCH=1 synced it
eval "$($RUN python -m deploy.devstack infra --data-dir .data/test-infra --print-env)"
mkdir -p test-artifacts/bench
status=0
for script in tests/bench/bench_${BENCH:-*}.py; do
  name=$(basename "$script" .py)
  echo "== $name"
  if ! $RUN python "$script" 2>&1 | tee "test-artifacts/bench/$name.txt"; then
    echo "!! $name failed"; status=1
  fi
done
exit $status
