#!/usr/bin/env bash
# The console's first paint with a large cluster: BUNDLES bundles of 3 replicas (default
# 1,000) under a prefix of its own, their statuses written by a real controller (no node
# agents: ten registrations written by hand, so every replica is placed on a node and shown
# pending, not reported), then `berth console`. Measures how long
# the console takes from start to its first snapshot, and the time to the last byte of the
# cluster page (`/`, every bundle × node cell) and of one bundle's page, over 20 requests
# each (curl; median and worst), and the page's size. Usage: bash scripts/bench-console.sh
# [BUNDLES] (after scripts/setup.sh; uses target/release/berth, building it if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
[ -x target/release/berth ] || cargo build --release --quiet --bin berth
B="$PWD/target/release/berth"
export BERTH_PREFIX="/bench-console-$$" BERTH_ETCD="${BERTH_ETCD:-127.0.0.1:2379}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ETCDCTL_API=3 etcdctl --endpoints="$BERTH_ETCD" del --prefix "$BERTH_PREFIX/" >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: berth.io/v1alpha1\nkind: Bundle\nmetadata:\n  name: b%04d\nspec:\n  docker:\n    image: berth-test/httpd:1\n    replicas: 3\n' "$i"
done >"$work/bundles.yaml"
"$B" apply -f "$work/bundles.yaml" >/dev/null
# Ten registered nodes (registrations written by hand, no agents): the controller places
# every replica on them, and the page has a column per node.
for k in $(seq 1 10); do
  ETCDCTL_API=3 etcdctl --endpoints="$BERTH_ETCD" put "$BERTH_PREFIX/nodes/n$k" "{\"name\":\"n$k\"}" >/dev/null
done
"$B" controller --no-metrics >"$work/controller.log" 2>&1 &
pids+=($!)
# Wait for the controller's statuses of every bundle.
until [ "$(ETCDCTL_API=3 etcdctl --endpoints="$BERTH_ETCD" get --prefix "$BERTH_PREFIX/status/bundles/" --keys-only | grep -c .)" -ge "$n" ]; do sleep 0.5; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
"$B" console --address "127.0.0.1:$port" >"$work/console.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$port/" 2>/dev/null | grep -q "b$(printf %04d "$n")"; do sleep 0.05; done
ready=$(date +%s.%N)
measure() { # measure PATH: median and worst time to the last byte (ms) over 20, and size
  local times=() size=0
  for _ in $(seq 20); do
    read -r t s < <(curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$port$1")
    times+=("$t"); size=$s
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$1" -v size="$size" \
    '{a[NR]=$1} END {printf "%-22s median %.1f ms, worst %.1f ms, %d KiB\n", p, a[int((NR+1)/2)]*1000, a[NR]*1000, size/1024}'
}
echo "bundles: $n (3 replicas each; $(grep -c . <(ETCDCTL_API=3 etcdctl --endpoints="$BERTH_ETCD" get --prefix "$BERTH_PREFIX/" --keys-only)) keys)"
awk -v a="$start" -v b="$ready" 'BEGIN {printf "console start to a full first page: %.2f s\n", b - a}'
measure /
measure "/bundles/b0001"
measure /events
echo "console resident memory: $(awk '/VmRSS/ {print $2, $3}' "/proc/${pids[1]}/status")"
