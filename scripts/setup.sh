#!/usr/bin/env bash
# Sets up a development environment from a fresh clone: system packages the
# tests need, a virtual environment in .venv, the Python dependencies, and
# ferrowsgi itself (the Rust extension is built by maturin in release mode).
# Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# nginx: tests/test_proxy.py runs the server behind it.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
# apache2 and haproxy: the front-end tests run the server behind them (mod_proxy_ajp,
# mod_proxy_fcgi, mod_proxy_scgi, mod_proxy_uwsgi, mod_cgi; send-proxy and send-proxy-v2).
command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || need_apt+=(apache2)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# iproute2 (ip), as root only: tests/test_remote_clients.py makes a network namespace for a
# client that is not on this host (it is skipped without root).
if [ "$(id -u)" = 0 ]; then
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need_apt+=(iproute2)
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]}" >&2; exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements-dev.txt
# Build and install the package (editable: the Python files are used in
# place; the extension is rebuilt when this runs again).
.venv/bin/python -m pip install -q -e .
.venv/bin/python -c "import ferrowsgi; print('ferrowsgi', ferrowsgi.__version__, 'installed in .venv')"
