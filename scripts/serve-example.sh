#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and serves the example application
# on http://127.0.0.1:8000 until Ctrl-C. Extra arguments go to ferrowsgi,
# e.g. scripts/serve-example.sh --threads 4 --access-log
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ferrowsgi --chdir examples hello:app --bind 127.0.0.1:8000 "$@"
