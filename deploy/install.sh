#!/usr/bin/env bash
# Creates the Python environment (uv workspace, one lock file) and installs the Debian
# packages the stack and the tests run: ffmpeg, caddy, chromium; with INSTALL_OBSERVE=1 also
# prometheus (Prometheus and promtool: `make install` and `make test` set it, `make up` with
# OBSERVE=1); with INSTALL_BENCH=1 also what `make bench` needs: the `bench` dependency group
# (imageio-ffmpeg) and what it measures against (wrk, nginx). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "install | installing uv from PyPI"
  python3 -m pip install --quiet uv
fi
UV=$(command -v uv || echo "python3 -m uv")
groups=()
if [ "${INSTALL_BENCH:-0}" = 1 ]; then groups+=(--group bench); fi
$UV sync --frozen --all-packages --quiet "${groups[@]}"

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${INSTALL_BENCH:-0}" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
fi
# Without its recommends (node exporter): the stack needs the server and promtool only.
lean=()
if [ "${INSTALL_OBSERVE:-0}" = 1 ]; then
  { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || lean+=(prometheus)
fi
if [ $((${#missing[@]} + ${#lean[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install | please install: apt-get install ${missing[*]} ${lean[*]}" >&2; exit 1; fi
  echo "install | apt-get install ${missing[*]} ${lean[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; fi
  if [ ${#lean[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
  fi
fi

# hls.js for the end-to-end browser test, pinned by tests/e2e/package-lock.json (only when
# the lock file is newer than what node_modules holds, so repeated runs stay quick)
if [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
  echo "install | npm ci in tests/e2e"
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

# The published schemas of the CRDs deploy/k8s uses (KEDA, Traefik), for deploy/tests,
# pinned by deploy/tests/crd-schemas/package-lock.json (same rule as above)
if [ deploy/tests/crd-schemas/package-lock.json -nt deploy/tests/crd-schemas/node_modules/.package-lock.json ]; then
  echo "install | npm ci in deploy/tests/crd-schemas"
  (cd deploy/tests/crd-schemas && npm ci --no-audit --no-fund --loglevel=error)
fi
