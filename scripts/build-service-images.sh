#!/usr/bin/env bash
# Builds the images of clustered services from Debian's packages, nothing pulled: for each
# service named (default: all), `debootstrap --variant=minbase --include=…` into a directory,
# the site configuration a deployment's configuration management would write, then
# `docker import` as berth-test/<service>:1. Every image has Debian's resource-agents (the
# real ocf:heartbeat agents under /usr/lib/ocf) and the tools those agents call.
#
#   redis     redis-server               ocf:heartbeat:redis
#   galera    mariadb-server, galera-4   ocf:heartbeat:galera
#   rabbitmq  rabbitmq-server            ocf:heartbeat:rabbitmq-cluster
#   debian    a clean Debian root with man-db, nothing of berth's (tests/package.rs installs
#             berth's .deb into it)
#   systemd   the same with systemd as its init (tests/package.rs upgrades the package
#             under it)
#
# Cached: an image whose label berth.recipe matches this script's recipe for it is kept, so
# a second run costs a `docker image inspect`. DOCKER_HOST applies as for docker itself.
# Concurrent runs (tests build what they need) wait for each other on a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
MIRROR="${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
DEBS=/var/cache/berth-debootstrap # downloaded packages, kept for the next build
COMMON="resource-agents,procps,iproute2,libxml2-utils,psmisc,netbase"
log() { printf 'service-images: %s\n' "$*" >&2; }

packages() {
  case "$1" in
    redis) echo "$COMMON,redis-server,redis-tools" ;;
    galera) echo "$COMMON,mariadb-server,mariadb-client,galera-4,rsync,lsof,socat" ;;
    rabbitmq) echo "$COMMON,rabbitmq-server" ;;
    debian) echo "man-db" ;;
    systemd) echo "systemd,systemd-sysv,dbus" ;;
    *) log "unknown service $1 (redis, galera, rabbitmq, debian, systemd)"; exit 2 ;;
  esac
}

# The site configuration of each service, run in the new root ($1) before it is imported
# (one function each, so that changing one rebuilds only its image).
configure_redis() {
  local root=$1
  # Replicas reach each other on their addresses, not only on loopback.
  sed -i -e 's/^bind .*/bind 0.0.0.0/' -e 's/^protected-mode yes/protected-mode no/' \
    -e 's/^daemonize yes/daemonize no/' "$root/etc/redis/redis.conf"
}

configure_galera() {
  local root=$1
  cat >"$root/etc/mysql/mariadb.conf.d/60-galera.cnf" <<'EOF'
[mysqld]
bind-address = 0.0.0.0
binlog_format = row
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_sst_method = rsync
# The agent passes the cluster's address on every start (or gcomm:// to bootstrap); this
# one only lets mysql_install_db run (a wsrep server refuses to start without one).
wsrep_cluster_address = gcomm://
EOF
  # The server's log directory (the package's postinst, which makes it, does not run under
  # debootstrap).
  mkdir -p "$root/var/log/mysql"
  chroot "$root" chown mysql:adm /var/log/mysql
  # The node's own address for galera (where a joiner receives its state transfer): a host
  # has several (the engine's bridge first), so, as a deployment writes wsrep_node_address
  # per host, this wrapper (the agent's `binary`) gives the address the host reaches the
  # cluster's first member from. (The agent starts the server through `su -`, so nothing of
  # its environment reaches here.)
  cat >"$root/usr/local/bin/mysqld_safe_node" <<'EOF'
#!/bin/sh
for a in "$@"; do
  case "$a" in
    --wsrep-cluster-address=gcomm://?*)
      peer=${a#--wsrep-cluster-address=gcomm://}
      peer=${peer%%,*}
      peer=$(getent ahostsv4 "${peer%%:*}" | awk '{ print $1; exit }')
      addr=$(ip -4 route get "$peer" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
      ;;
  esac
done
[ -z "$addr" ] || set -- "$@" --wsrep-node-address="$addr"
exec /usr/bin/mysqld_safe "$@"
EOF
  chmod 755 "$root/usr/local/bin/mysqld_safe_node"
  # The agent runs mysql_install_db from its binary's directory.
  ln -s /usr/bin/mysql_install_db "$root/usr/local/bin/mysql_install_db"
}

configure_debian() {
  : # as debootstrap leaves it
}

configure_systemd() {
  local root=$1
  # Only what a package test needs: no getty, no network or time services of its own.
  chroot "$root" systemctl mask getty@tty1.service systemd-timesyncd.service \
    systemd-networkd.service systemd-resolved.service >/dev/null 2>&1 || true
}

configure_rabbitmq() {
  local root=$1
  # One Erlang cookie for every node of the cluster, as a deployment provisions it.
  printf 'berthtestcookie' >"$root/var/lib/rabbitmq/.erlang.cookie"
  chroot "$root" chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie
  chmod 400 "$root/var/lib/rabbitmq/.erlang.cookie"
}

# What every image gets after its own configuration.
configure_common() {
  local root=$1
  # Agents keep state under /run/resource-agents.
  mkdir -p "$root/run/resource-agents"
  # Smaller: what an image does not need.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
}

recipe() { # a digest of what makes the image: packages, suite and configuration
  { echo "$SUITE $(packages "$1")"; declare -f "configure_$1" configure_common; } |
    sha256sum | cut -c1-16
}

build() {
  local svc=$1 tag="berth-test/$1:1" want have root
  want=$(recipe "$svc")
  have=$(docker image inspect -f '{{ index .Config.Labels "berth.recipe" }}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then return 0; fi
  log "building $tag from Debian $SUITE packages (a few minutes, once)"
  root=$(mktemp -d /var/tmp/berth-rootfs.XXXXXX)
  trap 'rm -rf "$root"' RETURN
  mkdir -p "$DEBS"
  debootstrap --variant=minbase --cache-dir="$DEBS" --include="$(packages "$svc")" \
    "$SUITE" "$root" "$MIRROR" \
    >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
  "configure_$svc" "$root"
  configure_common "$root"
  tar -C "$root" -c . | docker import -c "LABEL berth.recipe=$want" \
    -c 'CMD ["/bin/sleep", "infinity"]' - "$tag" >/dev/null
  log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
}

command -v debootstrap >/dev/null || { apt-get install -y -qq debootstrap >/dev/null; }
[ "$#" -gt 0 ] || set -- redis galera rabbitmq debian systemd
for svc in "$@"; do
  # One lock per service: a test waits only for the image it needs.
  (flock 9; build "$svc") 9>"/var/lock/berth-service-image-$svc.lock"
done
