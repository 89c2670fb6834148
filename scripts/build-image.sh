#!/usr/bin/env bash
# Builds berth's image (Dockerfile: FROM scratch + a static berth) as berth:latest, or the tag
# given. glibc links statically with crt-static, so the binary runs in an empty image.
# BERTH_BIN=target/x86_64-unknown-linux-gnu/debug/berth uses that static build as it is
# (the tests build it) instead of building a release.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BERTH_BIN:-}"
if [ -z "$bin" ]; then
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
  bin=target/x86_64-unknown-linux-gnu/release/berth
fi
docker build -q --build-arg "BERTH_BIN=$bin" -t "${1:-berth:latest}" . >/dev/null
echo "built ${1:-berth:latest}"
