#!/usr/bin/env bash
# Idle is idle (issue 14): berth up with the seed bundle (three apache replicas, each
# monitored every 10 s by berth's remote agent) under a prefix of its own; once all three
# are ready, count the writes under its prefix (an etcd watch of the prefix: every put and
# delete; lease keep-alives are none) and the berth process's CPU time over IDLE seconds
# (default 300), then remove it all.
#   bash scripts/bench-idle.sh [IDLE]
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${1:-300}
bash scripts/setup.sh >/dev/null
cargo build --quiet
bash scripts/build-test-image.sh --ocf target/debug/berth pcmk:httpd >/dev/null 2>&1
mkdir -p /srv/www
[ -e /srv/www/index.html ] || echo '<h1>berth: httpd-bundle</h1>' >/srv/www/index.html
export BERTH_PREFIX=/bench-idle-$$ BERTH_ETCD=http://127.0.0.1:2379
berth=target/debug/berth
data=$(mktemp -d)
log=$data/up.log
$berth up --name bench-idle --data-dir "$data" -f manifests/httpd-bundle.yaml >"$log" 2>&1 &
up=$!
cleanup() {
  $berth delete bundle httpd-bundle >/dev/null 2>&1 || true
  for _ in $(seq 1 300); do
    [ -z "$(docker ps -aq --filter label=berth.io/node=bench-idle)" ] && break
    sleep 0.1
  done
  kill -INT "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  ETCDCTL_API=3 etcdctl del --prefix "$BERTH_PREFIX/" >/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
cpu() { # user+system seconds of berth up
  awk '{printf "%.2f\n", ($14 + $15) / 100}' "/proc/$up/stat"
}
deadline=$((SECONDS + 120))
until $berth get bundles httpd-bundle 2>/dev/null | grep -q ' 3/3 '; do
  [ "$SECONDS" -lt "$deadline" ] || { cat "$log"; echo "bench-idle: the seed never got ready" >&2; exit 1; }
  sleep 0.5
done
# Let the first monitors and reports land.
sleep 15
ETCDCTL_API=3 etcdctl watch --prefix "$BERTH_PREFIX/" >"$data/watch" 2>&1 &
watcher=$!
c0=$(cpu)
sleep "$IDLE"
c1=$(cpu)
kill "$watcher"
writes=$(grep -cE '^(PUT|DELETE)$' "$data/watch" || true)
rss=$(awk '/VmRSS/ {print $2 / 1024 " MiB"}' "/proc/$up/status")
if [ "$writes" -gt 0 ]; then
  echo "written while idle (event, key, value):"
  grep -A2 -E '^(PUT|DELETE)$' "$data/watch" | cut -c1-600
fi
echo "idle ${IDLE} s with 3 monitored replicas: $writes etcd writes; berth up (controller + node agent) CPU $(python3 -c "print(round($c1 - $c0, 2))") s; RSS $rss"
