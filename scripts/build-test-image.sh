#!/usr/bin/env bash
# Builds the test image (tests/image: busybox httpd FROM scratch) under the given tags
# (default pcmk:httpd, the seed example's image). Nothing is pulled.
#
# With --ocf BERTH, the image also gets the project's OCF agent for busybox httpd
# (tests/image/ocf, installed as ocf:heartbeat:apache under /usr/lib/ocf) and the C runtime
# libraries the given berth binary links (from ldd), so that the node agent can run that
# binary inside as the remote agent. A static berth (scripts/build-image.sh) needs none.
#
# With --agents DIR (after --ocf), the image's /usr/lib/ocf starts from the OCF root DIR
# (third-party agents, as scripts/setup.sh unpacks them), with the project's agents over it,
# and gets the state directories those agents expect (/run/resource-agents, /var/run).
set -euo pipefail
cd "$(dirname "$0")/.."
berth=""
agents=""
if [ "${1:-}" = "--ocf" ]; then
  berth=$2
  shift 2
fi
if [ "${1:-}" = "--agents" ]; then
  agents=$2
  [ -d "$agents/resource.d" ] || { echo "--agents $agents: not an OCF root (no resource.d)" >&2; exit 2; }
  shift 2
fi
[ "$#" -gt 0 ] || set -- pcmk:httpd
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp tests/image/Dockerfile tests/image/index.html "$ctx/"
cp /bin/busybox "$ctx/busybox"
if [ -n "$berth" ]; then
  if [ -n "$agents" ]; then
    cp -a "$agents" "$ctx/ocf"
    printf 'RUN ["/bin/mkdir", "-p", "/run/resource-agents", "/var/run"]\n' >> "$ctx/Dockerfile"
  fi
  mkdir -p "$ctx/ocf"
  cp -r tests/image/ocf/. "$ctx/ocf/"
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
