#!/usr/bin/env bash
# A berth cluster of N Docker hosts on this one machine, to watch a host die and its
# replicas move: scripts/hosts.sh makes the hosts (network namespaces, each with its own
# dockerd, on one bridge, the LAN), then this runs an etcd on the LAN, a controller, one
# `berth node` per host, and applies the seed bundle (one replica per host, at LAN addresses
# 10.231.K.112…, port 80, on each host's lan0). The seed has 3 replicas: with fewer hosts the
# rest stay pending (one per host).
#
# It runs berth as the Debian package installs it: the package (scripts/build-deb.sh
# --debug, or BERTH_CLUSTER_DEB) unpacked under /run/berth-cluster/pkg (not installed on
# this machine, whose filesystem the hosts share), each daemon started with its unit's own
# ExecStart and an /etc/default/berth of its own host's. The etcd has TLS with client
# certificates required and authentication on (a throwaway CA and a password for the user
# berth, made here; the user may touch only /berth/): the documented secure path.
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
PKG=$STATE/pkg
BERTH=$PKG/usr/bin/berth
PKI=$STATE/pki
log() { printf 'cluster: %s\n' "$*" >&2; }

# A throwaway CA, etcd's server certificate for the LAN's address, and berth's client
# certificate (what a deployment's PKI would hand out).
make_pki() {
  local ip=$1
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=berth-cluster-ca \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    sign() { # sign NAME CN EXTENSIONS
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    }
    sign etcd etcd "subjectAltName=IP:$ip
extendedKeyUsage=serverAuth,clientAuth"
    sign client berth "extendedKeyUsage=clientAuth"
    head -c 18 /dev/urandom | base64 >berth-password
    head -c 18 /dev/urandom | base64 >root-password
    chmod 600 ./*-key.pem ./*-password
  )
}

# etcdctl as the administrator, over TLS.
admin() {
  ETCDCTL_API=3 etcdctl --endpoints="https://$1:2379" --cacert "$PKI/ca.pem" \
    --cert "$PKI/client.pem" --key "$PKI/client-key.pem" "${@:2}"
}

# The settings of one host, as /etc/default/berth holds them.
settings() { # settings IP NODE NODE-ARGS
  cat <<EOF
BERTH_ETCD=https://$1:2379
BERTH_PREFIX=/berth
BERTH_ETCD_USER=berth
BERTH_ETCD_PASSWORD_FILE=$PKI/berth-password
BERTH_ETCD_CA=$PKI/ca.pem
BERTH_ETCD_CERT=$PKI/client.pem
BERTH_ETCD_KEY=$PKI/client-key.pem
BERTH_NODE_NAME=$2
BERTH_NODE_ARGS=$3
BERTH_CONTROLLER_ARGS=--name controller
EOF
}

# Starts UNIT's ExecStart as systemd would (scripts/run-unit.sh), with the settings file
# DEFAULT as its EnvironmentFile, in network namespace NS (or the machine's).
start_unit() { # start_unit UNIT DEFAULT NS LOG PIDFILE
  local enter=()
  [ -z "$3" ] || enter=(nsenter --net="/var/run/netns/$3")
  setsid "${enter[@]}" bash scripts/run-unit.sh "$PKG/lib/systemd/system/$1.service" "$2" "$BERTH" \
    >"$4" 2>&1 </dev/null &
  echo $! >"$5"
}

up() {
  local n=${1:-3} what=${2:-httpd}
  [ ! -e "$STATE/lan" ] || { log "already up (LAN $(cat "$STATE/lan")); run: $0 down"; exit 1; }
  bash scripts/setup.sh
  command -v openssl >/dev/null || apt-get install -y -qq openssl >/dev/null
  local deb=${BERTH_CLUSTER_DEB:-}
  [ -n "$deb" ] || deb=$(bash scripts/build-deb.sh --debug)
  mkdir -p "$STATE"
  dpkg-deb -x "$deb" "$PKG"
  bash scripts/build-test-image.sh --ocf "$BERTH" pcmk:httpd >/dev/null 2>&1
  if [ ! -e /srv/www ]; then
    mkdir -p /srv/www
    echo '<h1>berth: httpd-bundle</h1>' >/srv/www/index.html
  fi
  local k ip
  local image=pcmk:httpd flags=""
  if [ "$what" = galera ]; then
    bash scripts/build-service-images.sh galera
    image=berth-test/galera:1
    mkdir -p "$STATE/galera-data"
    flags="--allow-host-namespaces --allow-source-dir $STATE/galera-data"
  fi
  k=$(bash scripts/hosts.sh up "$n" "$image")
  ip=10.231.$k.1
  echo "$k" >"$STATE/lan"
  make_pki "$ip"
  setsid etcd --name lan --data-dir "$STATE/etcd" \
    --listen-client-urls "https://$ip:2379" --advertise-client-urls "https://$ip:2379" \
    --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
    --initial-cluster "lan=http://$ip:2380" --cert-file "$PKI/etcd.pem" \
    --key-file "$PKI/etcd-key.pem" --trusted-ca-file "$PKI/ca.pem" --client-cert-auth \
    >"$STATE/etcd.log" 2>&1 </dev/null &
  echo $! >"$STATE/etcd.pid"
  until admin "$ip" endpoint health >/dev/null 2>&1; do sleep 0.2; done
  # Authentication: root, and berth with read and write on its prefix only.
  admin "$ip" user add root --new-user-password="$(cat "$PKI/root-password")" >/dev/null
  admin "$ip" user grant-role root root >/dev/null
  admin "$ip" user add berth --new-user-password="$(cat "$PKI/berth-password")" >/dev/null
  admin "$ip" role add berth >/dev/null
  admin "$ip" role grant-permission berth --prefix=true readwrite /berth/ >/dev/null
  admin "$ip" user grant-role berth berth >/dev/null
  admin "$ip" auth enable >/dev/null
  settings "$ip" controller "" >"$STATE/default-controller"
  start_unit berth-controller "$STATE/default-controller" "" "$STATE/controller.log" "$STATE/controller.pid"
  # The CLI's settings, for a shell (the connection's only: no spaces in them).
  grep '^BERTH_ETCD\|^BERTH_PREFIX' "$STATE/default-controller" | sed 's/^/export /' >"$STATE/client.env"
  # shellcheck disable=SC1091
  . "$STATE/client.env"
  local i
  for i in $(seq 1 "$n"); do
    settings "$ip" "bl${k}h$i" "--docker-host unix:///run/berth-hosts/$k/h$i/docker.sock --state-dir $STATE/node-h$i --label host=$i $flags" \
      >"$STATE/default-h$i"
    start_unit berth-node "$STATE/default-h$i" "bl${k}h$i" "$STATE/node-h$i.log" "$STATE/node-h$i.pid"
  done
  if [ "$what" = galera ]; then
    galera_manifest "$k" "$n" | "$BERTH" apply -f - --wait --timeout 10m
    "$BERTH" status
    cat <<EOF

Up: a galera cluster on $n hosts of LAN bl$k (10.231.$k.0/24), etcd $BERTH_ETCD (TLS,
authentication), logs in $STATE; each host's settings in $STATE/default-h<i>.
  . $STATE/client.env                             # the CLI's settings (etcd, TLS, user)
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

Up: $n hosts on LAN bl$k (10.231.$k.0/24), etcd $BERTH_ETCD (TLS, authentication),
logs in $STATE; each host's settings in $STATE/default-h<i>.
  . $STATE/client.env                             # the CLI's settings (etcd, TLS, user)
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
