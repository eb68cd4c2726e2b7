#!/usr/bin/env bash
# The whole sansa test suite: what README.md calls "run all tests" and what
# .ci/run runs on a fresh machine. Installs what the tests need, then checks
# formatting and lints, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")"

echo "== rustfmt and clippy components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
