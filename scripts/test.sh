#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite:
# formatting and lints, the Rust tests, the Python integration tests on
# CPython 3.11, a short fuzzing run, and a smoke test on a second CPython.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== rustfmt, clippy, ruff"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== Rust tests"
cargo test -q -p ferrowsgi-proto -p ferrowsgi-server
# The integration tests again with the handler on a pool of threads (the
# tests that choose a thread count keep theirs).
FERROWSGI_TEST_THREADS=4 cargo test -q -p ferrowsgi-server --test http1

echo "== Python integration tests"
.venv/bin/python -m pytest tests -q -p no:cacheprovider

echo "== Fuzzing smoke run (20 s per target) and corpus replay"
(cd fuzz && cargo test -q --lib)
bash scripts/fuzz.sh smoke

echo "== Smoke test on another CPython"
bash scripts/smoke-other-python.sh
