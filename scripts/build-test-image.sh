#!/usr/bin/env bash
# Builds the test image (tests/image: busybox httpd FROM scratch) under the given tags
# (default pcmk:httpd, the seed example's image). Nothing is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- pcmk:httpd
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp tests/image/Dockerfile tests/image/index.html "$ctx/"
cp /bin/busybox "$ctx/busybox"
args=()
for t in "$@"; do args+=(-t "$t"); done
docker build -q "${args[@]}" "$ctx" >/dev/null
