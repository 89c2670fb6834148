#!/usr/bin/env bash
# Builds the test image (tests/image: busybox httpd FROM scratch) under the given tags
# (default pcmk:httpd, the seed example's image). Nothing is pulled.
#
# With --ocf BERTH, the image also gets the project's OCF agent for busybox httpd
# (tests/image/ocf, installed as ocf:heartbeat:apache under /usr/lib/ocf) and the C runtime
# libraries the given berth binary links (from ldd), so that the node agent can run that
# binary inside as the remote agent. A static berth (scripts/build-image.sh) needs none.
set -euo pipefail
cd "$(dirname "$0")/.."
berth=""
if [ "${1:-}" = "--ocf" ]; then
  berth=$2
  shift 2
fi
[ "$#" -gt 0 ] || set -- pcmk:httpd
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp tests/image/Dockerfile tests/image/index.html "$ctx/"
cp /bin/busybox "$ctx/busybox"
if [ -n "$berth" ]; then
  cp -r tests/image/ocf "$ctx/ocf"
  mkdir -p "$ctx/libs"
  for lib in $(ldd "$berth" 2>/dev/null | grep -o '/[^ ]*' || true); do
    mkdir -p "$ctx/libs$(dirname "$lib")"
    cp -L "$lib" "$ctx/libs$lib"
  done
  printf 'COPY ocf /usr/lib/ocf\nCOPY libs /\n' >> "$ctx/Dockerfile"
fi
args=()
for t in "$@"; do args+=(-t "$t"); done
docker build -q "${args[@]}" "$ctx" >/dev/null
