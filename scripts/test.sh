#!/usr/bin/env bash
# Runs every check a change must pass: set-up (scripts/setup.sh starts dockerd and etcd when
# they are not running), formatting, clippy, and the whole test suite against the real etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
