#!/usr/bin/env bash
# Builds berth's image (Dockerfile: FROM scratch + a static berth) as berth:latest, or the tag
# given. glibc links statically with crt-static, so the binary runs in an empty image.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
docker build -q -t "${1:-berth:latest}" . >/dev/null
echo "built ${1:-berth:latest}"
