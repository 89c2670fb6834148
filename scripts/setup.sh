#!/usr/bin/env bash
# Idempotently installs and starts what berth needs on a Debian machine:
# docker.io, etcd-server, etcd-client, protobuf-compiler (etcd-client's build needs protoc),
# busybox-static (test images are built FROM scratch around it), lintian and systemd's
# systemd-analyze (checks of the Debian package), chromium and chromium-driver (the console's
# browser tests); unpacks (without installing)
# Debian's resource-agents and pacemaker-resource-agents into /var/lib/berth/ocf-agents, the
# third-party OCF agents the tests run unchanged inside containers; then starts dockerd and a
# local etcd on 127.0.0.1:2379 when none is reachable. Safe to run any number of times.
set -euo pipefail

ETCD_ENDPOINT="${BERTH_SETUP_ETCD:-127.0.0.1:2379}"
ETCD_DATA="${BERTH_ETCD_DATA:-/var/lib/berth/etcd}"
LOG_DIR="${BERTH_LOG_DIR:-/var/log/berth}"

log() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_pkgs+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need_pkgs+=(libprotobuf-dev)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# The first-run test drives scripts/run.sh in a pseudo-terminal.
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
# The Debian package (scripts/build-deb.sh) is checked with lintian and systemd-analyze.
command -v lintian >/dev/null 2>&1 || need_pkgs+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
# The web console is tested in a real browser (headless chromium through chromedriver); the
# console's HTTPS test makes its certificate with openssl.
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

mkdir -p "$LOG_DIR" "$ETCD_DATA"

OCF_AGENTS="${BERTH_OCF_AGENTS:-/var/lib/berth/ocf-agents}"
if [ -x "$OCF_AGENTS/resource.d/pacemaker/Stateful" ] && [ -x "$OCF_AGENTS/resource.d/heartbeat/Dummy" ]; then
  log "third-party OCF agents already in $OCF_AGENTS"
else
  log "unpacking Debian's resource-agents and pacemaker-resource-agents into $OCF_AGENTS"
  dl=$(mktemp -d)
  (cd "$dl" && apt-get download -qq resource-agents pacemaker-resource-agents 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq resource-agents pacemaker-resource-agents; })
  for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$dl/root"; done
  rm -rf "$OCF_AGENTS.new"
  mkdir -p "$(dirname "$OCF_AGENTS")"
  cp -a "$dl/root/usr/lib/ocf" "$OCF_AGENTS.new"
  rm -rf "$OCF_AGENTS" "$dl"
  mv "$OCF_AGENTS.new" "$OCF_AGENTS"
fi

wait_for() { # wait_for WHAT SECONDS CMD...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "$what did not come up in ${secs}s"; return 1; fi
    sleep 0.2
  done
}

if docker info >/dev/null 2>&1; then
  log "dockerd already running"
else
  log "starting dockerd (log: $LOG_DIR/dockerd.log)"
  # Its own session (setsid): Ctrl-C in the terminal that ran this (scripts/run.sh, say)
  # reaches the foreground's process group only, not dockerd or etcd.
  setsid -f dockerd >"$LOG_DIR/dockerd.log" 2>&1 </dev/null
  wait_for dockerd 60 docker info
fi

if ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINT" endpoint health >/dev/null 2>&1; then
  log "etcd already reachable at $ETCD_ENDPOINT"
else
  log "starting etcd on $ETCD_ENDPOINT (data: $ETCD_DATA, log: $LOG_DIR/etcd.log)"
  setsid -f etcd --name berth-local --data-dir "$ETCD_DATA" \
    --listen-client-urls "http://$ETCD_ENDPOINT" --advertise-client-urls "http://$ETCD_ENDPOINT" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster berth-local=http://127.0.0.1:2380 \
    --auto-compaction-mode periodic --auto-compaction-retention 30m \
    >"$LOG_DIR/etcd.log" 2>&1 </dev/null
  wait_for etcd 60 env ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINT" endpoint health
fi
log "ready: dockerd and etcd ($ETCD_ENDPOINT)"
