#!/usr/bin/env bash
# Builds ferrowsgi for a second CPython (3.13 from pyenv when present, else
# 3.9) in .venv-alt and runs the API and response tests there.
set -euo pipefail
cd "$(dirname "$0")/.."
alt=""
for v in 3.13 3.12 3.9; do
  cand=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v"*/bin/python3 2>/dev/null | head -1 || true)
  if [ -n "$cand" ]; then alt=$cand; break; fi
done
if [ -z "$alt" ]; then
  echo "smoke: no second CPython found under pyenv; skipped"
  exit 0
fi
echo "smoke: using $($alt --version)"
if [ ! -x .venv-alt/bin/python ]; then
  "$alt" -m venv .venv-alt
fi
.venv-alt/bin/python -m pip install -q --upgrade pip >/dev/null
.venv-alt/bin/python -m pip install -q pytest pytest-timeout h11
.venv-alt/bin/python -m pip install -q .
# Run from a copy-free location so the installed package (not python/) is used.
.venv-alt/bin/python -m pytest tests/test_api.py tests/test_response.py tests/test_environ.py \
  -q -p no:cacheprovider --rootdir . -c pyproject.toml
