#!/usr/bin/env bash
# podman as berth's engine, through its Docker-compatible API service (rootful).
#
#   bash scripts/podman.sh start   # install podman if missing, start its API service
#   bash scripts/podman.sh test    # start, then run the node agent's, the primitive's and
#                                  # the fault tests against it (scripts/test.sh runs this)
#
# The service listens on unix:///run/berth-podman/podman.sock (point DOCKER_HOST, or
# `berth node --docker-host`, there). It reads its own containers.conf
# (/var/lib/berth/podman/containers.conf, through CONTAINERS_CONF; the machine's
# /etc/containers is left alone), which makes podman 4.3 start containers on these
# machines: the runc runtime, the cgroupfs manager (no systemd here) and default ulimits
# within the limits the machine lets root raise (podman's own defaults ask for more
# processes than allowed here, and every container then fails "error setting rlimit type
# 6: operation not permitted").
set -euo pipefail
cd "$(dirname "$0")/.."
SOCK=/run/berth-podman/podman.sock
CONF=/var/lib/berth/podman/containers.conf
LOG=/var/log/berth/podman.log
log() { printf 'podman: %s\n' "$*" >&2; }

ping() { curl -sf --unix-socket "$SOCK" http://podman/_ping >/dev/null 2>&1; }

start() {
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    log "installing podman and runc"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends podman runc >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends podman runc >/dev/null; }
  fi
  mkdir -p "$(dirname "$SOCK")" "$(dirname "$CONF")" "$(dirname "$LOG")"
  local nproc nofile
  nproc=$(ulimit -Hu)
  nofile=$(ulimit -Hn)
  [ "$nproc" = unlimited ] && nproc=32768
  [ "$nofile" = unlimited ] && nofile=20000
  [ "$nproc" -le 32768 ] || nproc=32768
  [ "$nofile" -le 20000 ] || nofile=20000
  cat >"$CONF.new" <<CONF
# Written by berth's scripts/podman.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
  if ! cmp -s "$CONF.new" "$CONF" 2>/dev/null; then
    mv "$CONF.new" "$CONF"
    # A service started with other settings is restarted.
    pkill -f "podman system service .*$SOCK" 2>/dev/null || true
  else
    rm -f "$CONF.new"
  fi
  if ping; then return 0; fi
  log "starting podman's API service on $SOCK (log: $LOG)"
  CONTAINERS_CONF="$CONF" setsid podman system service --time=0 "unix://$SOCK" \
    >>"$LOG" 2>&1 </dev/null &
  local i
  for i in $(seq 1 100); do
    ping && return 0
    sleep 0.2
  done
  tail -20 "$LOG" >&2
  log "the service did not answer on $SOCK"
  return 1
}

run_tests() {
  start
  export DOCKER_HOST="unix://$SOCK"
  # Every test of these files, but two that need what podman 4.3 does not give here:
  # - idle_connections_to_the_control_port_starve_nothing gives its bundle `--ulimit
  #   nofile=64:64`; with any --ulimit, podman's Docker API drops the configured defaults
  #   and asks runc for more processes (RLIMIT_NPROC) than this machine lets root raise,
  #   so the container cannot start (on podman, give `--ulimit nproc=N:N` beside it);
  # - a_fenced_node_creates_and_starts_nothing_until_its_lease_is_renewed watches for
  #   Docker's `kill` event when a stop begins, which podman does not send.
  cargo nextest run --no-fail-fast --test node --test primitive --test safety --test hostile \
    -E 'not (test(=idle_connections_to_the_control_port_starve_nothing) | test(=a_fenced_node_creates_and_starts_nothing_until_its_lease_is_renewed))'
}

case "${1:-}" in
  start) start ;;
  test) run_tests ;;
  *) echo "usage: $0 start|test" >&2; exit 2 ;;
esac
