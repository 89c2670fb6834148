#!/usr/bin/env bash
# A berth cluster of N Docker hosts on this one machine, to watch a host die and its
# replicas move: scripts/hosts.sh makes the hosts (network namespaces, each with its own
# dockerd, on one bridge, the LAN), then this runs an etcd on the LAN, a controller, one
# `berth node` per host, and applies the seed bundle (one replica per host, at LAN addresses
# 10.231.K.112…, port 80, on each host's lan0). The seed has 3 replicas: with fewer hosts the
# rest stay pending (one per host).
#
# With `galera`, the bundle is instead a three-node galera cluster as OpenStack runs it:
# Debian's mariadb and galera-4 with the real ocf:heartbeat:galera (the image from
# scripts/build-service-images.sh), on the hosts' network, a control port,
# container-attribute-target=host, the data of each replica on the machine below
# /run/berth-cluster/galera-data.
#
#   bash scripts/cluster.sh up [N] [galera]    (default 3 hosts, the httpd seed)
#   bash scripts/cluster.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=/run/berth-cluster
BERTH=$PWD/target/debug/berth
log() { printf 'cluster: %s\n' "$*" >&2; }

up() {
  local n=${1:-3} what=${2:-httpd}
  [ ! -e "$STATE/lan" ] || { log "already up (LAN $(cat "$STATE/lan")); run: $0 down"; exit 1; }
  bash scripts/setup.sh
  cargo build --quiet
  bash scripts/build-test-image.sh --ocf "$BERTH" pcmk:httpd >/dev/null 2>&1
  if [ ! -e /srv/www ]; then
    mkdir -p /srv/www
    echo '<h1>berth: httpd-bundle</h1>' >/srv/www/index.html
  fi
  local k ip
  local image=pcmk:httpd flags=()
  if [ "$what" = galera ]; then
    bash scripts/build-service-images.sh galera
    image=berth-test/galera:1
    mkdir -p "$STATE/galera-data"
    flags=(--allow-host-namespaces --allow-source-dir "$STATE/galera-data")
  fi
  k=$(bash scripts/hosts.sh up "$n" "$image")
  ip=10.231.$k.1
  mkdir -p "$STATE"
  echo "$k" >"$STATE/lan"
  setsid etcd --name lan --data-dir "$STATE/etcd" \
    --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
    --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
    --initial-cluster "lan=http://$ip:2380" >"$STATE/etcd.log" 2>&1 </dev/null &
  echo $! >"$STATE/etcd.pid"
  export BERTH_ETCD=http://$ip:2379 BERTH_PREFIX=/berth
  until ETCDCTL_API=3 etcdctl --endpoints="$BERTH_ETCD" endpoint health >/dev/null 2>&1; do sleep 0.2; done
  setsid "$BERTH" controller --name controller >"$STATE/controller.log" 2>&1 </dev/null &
  echo $! >"$STATE/controller.pid"
  local i
  for i in $(seq 1 "$n"); do
    setsid nsenter --net="/var/run/netns/bl${k}h$i" "$BERTH" node --name "bl${k}h$i" \
      --docker-host "unix:///run/berth-hosts/$k/h$i/docker.sock" \
      --state-dir "$STATE/node-h$i" --label "host=$i" "${flags[@]}" \
      >"$STATE/node-h$i.log" 2>&1 </dev/null &
    echo $! >"$STATE/node-h$i.pid"
  done
  if [ "$what" = galera ]; then
    galera_manifest "$k" "$n" | "$BERTH" apply -f - --wait --timeout 10m
    "$BERTH" status
    cat <<EOF

Up: a galera cluster on $n hosts of LAN bl$k (10.231.$k.0/24), etcd $BERTH_ETCD, logs in $STATE.
  export BERTH_ETCD=$BERTH_ETCD
  $BERTH status
  $BERTH attribute -t status                      # what the agents keep (last-committed, …)
  docker -H unix:///run/berth-hosts/$k/h1/docker.sock exec galera-bundle-docker-0 \\
    mysql -e "SHOW STATUS LIKE 'wsrep_cluster_size'"   # (the replica on host 1 may have another number)
  bash scripts/hosts.sh kill-host $k 1            # power host 1 off; the others keep the cluster
  bash scripts/cluster.sh down                    # remove everything (the data too)
EOF
    return
  fi
  sed -e "s/replicasPerHost: 3/replicasPerHost: 1/" \
    -e "s/ipRangeStart: 127.0.2.112/ipRangeStart: 10.231.$k.112/" \
    -e "s/hostInterface: lo/hostInterface: lan0/" manifests/httpd-bundle.yaml |
    "$BERTH" apply -f - --wait --timeout 2m
  "$BERTH" status
  cat <<EOF

Up: $n hosts on LAN bl$k (10.231.$k.0/24), etcd $BERTH_ETCD, logs in $STATE.
  export BERTH_ETCD=$BERTH_ETCD
  $BERTH status                                   # where each replica runs
  ip netns exec bl${k}c curl -s http://10.231.$k.112/  # a client on the LAN
  bash scripts/hosts.sh kill-host $k 1            # power host 1 off; watch its replica move
  bash scripts/cluster.sh down                    # remove everything
EOF
}

# The galera bundle (scripts/galera-bundle.yaml.in) for LAN K's N hosts.
galera_manifest() {
  local k=$1 n=$2 i names=()
  for i in $(seq 1 "$n"); do names+=("bl${k}h$i"); done
  sed -e "s|@REPLICAS@|$n|g" -e "s|@DATA@|$STATE/galera-data|" \
    -e "s|@CLUSTER@|$(IFS=,; echo "${names[*]}")|" scripts/galera-bundle.yaml.in
}

down() {
  [ -e "$STATE/lan" ] || { log "nothing is up"; return 0; }
  local f
  for f in "$STATE"/node-h*.pid "$STATE/controller.pid" "$STATE/etcd.pid"; do
    [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  bash scripts/hosts.sh down "$(cat "$STATE/lan")"
  rm -rf "$STATE"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) log "usage: cluster.sh up [N] [galera] | down"; exit 1 ;;
esac
