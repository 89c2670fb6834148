#!/usr/bin/env bash
# berth against a sequential `docker run` loop (issue 14), on this host's dockerd and etcd:
# three replicas of busybox httpd (the test image; its PID 1 ignores SIGTERM, so a stop waits
# out the grace), published on 127.0.3.x:8080. Per round: start → all three answer HTTP, and
# removed → all gone. `docker rm -f` kills at once; berth stops with the bundle's grace
# (--stop-timeout 2 here), all replicas together. Prints medians over ROUNDS (default 5).
#   bash scripts/bench-docker.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
bash scripts/setup.sh >/dev/null
cargo build --quiet
bash scripts/build-test-image.sh berth-test/httpd:1 >/dev/null 2>&1
export BERTH_PREFIX=/bench-docker-$$ BERTH_ETCD=http://127.0.0.1:2379
berth=target/debug/berth
node=bench-docker
data=$(mktemp -d)
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 2))"; }
serving() { # all of 127.0.3.$1.. $2 answer
  local i
  for i in $(seq "$1" "$2"); do
    curl -s -o /dev/null -m 0.2 "http://127.0.3.$i:8080/" || return 1
  done
}
wait_for() { local deadline=$((SECONDS + 60)); until "$@"; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.02; done; }
none_left() { [ -z "$(docker ps -aq --filter "label=berth.io/node=$node")" ]; }
$berth up --name "$node" --data-dir "$data" >"$data/up.log" 2>&1 &
up=$!
cleanup() {
  $berth delete bundle bench >/dev/null 2>&1 || true
  wait_for none_left || true
  docker rm -f bench-raw-1 bench-raw-2 bench-raw-3 >/dev/null 2>&1 || true
  kill -INT "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  ETCDCTL_API=3 etcdctl del --prefix "$BERTH_PREFIX/" >/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
wait_for $berth status >/dev/null
bundle="apiVersion: berth.io/v1alpha1
kind: Bundle
metadata:
  name: bench
spec:
  docker:
    image: berth-test/httpd:1
    replicas: 3
    replicasPerHost: 3
    options: --stop-timeout 2
  network:
    ipRangeStart: 127.0.3.21
    portMappings:
      - id: http
        port: 8080
        internalPort: 80"
raw_up=() raw_rm=() b_up=() b_rm=() b_wait=()
for r in $(seq 1 "$ROUNDS"); do
  t=$(now)
  for i in 1 2 3; do
    docker run -d --name "bench-raw-$i" -p "127.0.3.1$i:8080:80" berth-test/httpd:1 >/dev/null
  done
  wait_for serving 11 13
  raw_up+=("$(since "$t")")
  t=$(now)
  docker rm -f bench-raw-1 bench-raw-2 bench-raw-3 >/dev/null
  raw_rm+=("$(since "$t")")

  t=$(now)
  echo "$bundle" | $berth apply -f - >/dev/null
  wait_for serving 21 23
  b_up+=("$(since "$t")")
  t=$(now)
  $berth delete bundle bench >/dev/null
  wait_for none_left
  b_rm+=("$(since "$t")")

  # As the docker loop is measured: the client first waits for its command to say the
  # containers run (`--wait`: every replica ready), then probes. Probing while a container
  # starts costs the probe's whole timeout (docker-proxy accepts, and the connection to the
  # container hangs until its network is up), which the row above pays and the loop never
  # does.
  t=$(now)
  echo "$bundle" | $berth apply --wait -f - >/dev/null
  wait_for serving 21 23
  b_wait+=("$(since "$t")")
  $berth delete bundle bench >/dev/null
  wait_for none_left
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| | start → 3 serving | removed → all gone |"
echo "| --- | --- | --- |"
echo "| sequential docker run loop / rm -f | $(median "${raw_up[@]}") s | $(median "${raw_rm[@]}") s |"
echo "| berth apply / delete (grace 2 s) | $(median "${b_up[@]}") s | $(median "${b_rm[@]}") s |"
echo "| berth apply --wait, then probed | $(median "${b_wait[@]}") s | |"
echo "rounds: $ROUNDS; raw up ${raw_up[*]}; berth up ${b_up[*]}; berth up --wait ${b_wait[*]}; berth removal ${b_rm[*]}"
