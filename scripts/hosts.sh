#!/usr/bin/env bash
# Several real Docker hosts on this machine, on one LAN: the multi-host test harness (the
# Rust module tests/common/hosts.rs drives it) and `scripts/cluster.sh` stand on it.
#
#   hosts.sh up N [IMAGE...]   make a LAN and N hosts; prints the LAN's number K
#   hosts.sh down K            tear LAN K down: every daemon, process, namespace, link, mount
#   hosts.sh kill-host K I     power host I off: every process on it dies, its LAN link drops
#   hosts.sh boot-host K I     power host I on again after kill-host: its LAN link, its dockerd
#                              (same data-root: its containers are there, stopped)
#   hosts.sh kill-dockerd K I  kill -9 only host I's dockerd and containerd
#   hosts.sh cut K I PORT...   host I can no longer reach the LAN's etcd (TCP PORT on .1)
#   hosts.sh heal K I          undo cut
#   hosts.sh disk K I          prints where host I's small disk (an 8 MiB tmpfs) is mounted
#   hosts.sh fill K I          fill host I's disk: every write on it fails with ENOSPC
#   hosts.sh unfill K I        free host I's disk again
#
# LAN K is the bridge `bl<K>` with 10.231.K.1/24 (the machine's side: etcd listens there),
# host I is the network namespace `bl<K>h<I>` with `lan0` = 10.231.K.(10+I)/24, and a client
# namespace `bl<K>c` has 10.231.K.2 for reaching replica addresses as a LAN client does.
# Each host runs its own dockerd (entered with `nsenter --net` only, so cgroups stay
# visible; a private mount namespace whose tmpfs holds its exec-root), its own data-root,
# docker0 subnet 10.232.I.0/24 and containerd namespace, its socket at
# /run/berth-hosts/<K>/h<I>/docker.sock. Test images are copied in with docker save | load.
# Traffic stays on the bridge and in these namespaces: nothing leaves the machine.
set -euo pipefail

RUN=/run/berth-hosts
DATA=/var/lib/berth-hosts
log() { printf 'hosts: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, dockerd)"

lan_of() { echo "bl$1"; }
ns_of() { echo "bl$1h$2"; }

wait_for() { # wait_for WHAT SECONDS CMD...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { log "$what did not come up in ${secs}s"; return 1; }
    sleep 0.1
  done
}

# Kills every process in the cgroups below DIR (relative to each v1 hierarchy, or v2):
# freeze, SIGKILL, thaw, so nothing forks away meanwhile.
kill_cgroup() {
  local rel=$1 c f
  if [ -d /sys/fs/cgroup/freezer ]; then
    c=/sys/fs/cgroup/freezer/$rel
    [ -d "$c" ] || return 0
    echo FROZEN >"$c/freezer.state" 2>/dev/null || true
    find "$c" -name cgroup.procs | while read -r f; do
      xargs -r kill -9 <"$f" 2>/dev/null || true
    done
    echo THAWED >"$c/freezer.state" 2>/dev/null || true
  else
    c=/sys/fs/cgroup/$rel
    [ -d "$c" ] || return 0
    echo 1 >"$c/cgroup.kill" 2>/dev/null || true
  fi
}

# Removes the empty cgroup directories below REL in every hierarchy.
rm_cgroup() {
  local rel=$1 h
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$h$rel" ] && find "$h$rel" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# Every process whose network namespace is NS's (agents, dockerd, containerd, helpers).
procs_in_ns() {
  local ino p
  ino=$(stat -L -c %i "/var/run/netns/$1" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$ino" ] && echo "${p#/proc/}"
  done
  return 0
}

# True once no process is left in network namespace NS (evaluated at each call: wait_for's
# command must look again each time, not test a list taken once).
ns_empty() { [ -z "$(procs_in_ns "$1")" ]; }

# Kills host I of LAN K: its processes, its containers (their cgroups: the node agent's
# scope /berth/<node>, named after the host, and dockerd's default /berth-hosts/K/hI).
kill_host_procs() {
  local k=$1 i=$2 ns pids
  ns=$(ns_of "$k" "$i")
  pids=$(procs_in_ns "$ns")
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  # dockerd's managed containerd and its shims live in the netns too; containers in theirs.
  kill_cgroup "berth/$ns"
  kill_cgroup "berth-hosts/$k/h$i"
}

# Starts host I of LAN K's dockerd: in the host's network namespace only, with a private
# mount namespace whose tmpfs holds the exec-root (containerd's socket, the netns bind
# mounts) and whose /etc/hosts names the LAN's hosts. Its data-root persists across a
# power-off, as a disk does.
start_dockerd() {
  local k=$1 i=$2 ns dir data
  ns=$(ns_of "$k" "$i")
  dir="$RUN/$k/h$i"
  data="$DATA/$k/h$i"
  setsid nsenter --net="/var/run/netns/$ns" unshare --mount --propagation private \
    sh -c "mount -t tmpfs tmpfs '$dir/exec' && mount --bind '$RUN/$k/etc-hosts' /etc/hosts &&
      exec dockerd \
      --host 'unix://$dir/docker.sock' --data-root '$data' --exec-root '$dir/exec' \
      --pidfile '$dir/dockerd.pid' --bip 10.232.$i.1/24 \
      --containerd-namespace 'bl$k-h$i' --containerd-plugins-namespace 'bl$k-h$i-plugins' \
      --cgroup-parent '/berth-hosts/$k/h$i'" \
    >>"$dir/dockerd.log" 2>&1 </dev/null &
}

wait_dockerd() {
  local k=$1 i=$2 dir="$RUN/$1/h$2"
  wait_for "dockerd of host $i" 60 docker -H "unix://$dir/docker.sock" info ||
    { tail -20 "$dir/dockerd.log" >&2; return 1; }
}

# The LAN's etcd members and controllers run on the machine, on (or against) the LAN's gateway
# address: a test killed before its cleanup leaves them behind, and the next LAN K would
# talk to them (an old controller would lead the new cluster).
kill_stale() {
  local k=$1 p
  pkill -9 -f "^etcd .*http://10\.231\.$k\.1:" 2>/dev/null || true
  for p in $(pgrep -f "berth controller" || true); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q "^BERTH_ETCD=.*//10\.231\.$k\.1:" &&
      kill -9 "$p" 2>/dev/null || true
  done
}

up() {
  local n=$1; shift
  local k=1
  mkdir -p "$RUN"
  # mkdir claims a number atomically: parallel test runs each get their own LAN.
  until [ ! -e "/sys/class/net/$(lan_of $k)" ] && mkdir "$RUN/$k" 2>/dev/null; do
    k=$((k + 1))
    [ "$k" -le 250 ] || die "no free LAN number"
  done
  local lan; lan=$(lan_of $k)
  kill_stale "$k"
  echo "$n" >"$RUN/$k/hosts"
  # The hosts know each other by name, as a deployment's hosts do (DNS, or the /etc/hosts it
  # writes): each host's dockerd sees this file as /etc/hosts (see start_dockerd) and copies
  # it into the containers on the host's network.
  {
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
    for i in $(seq 1 "$n"); do printf '10.231.%s.%s\t%s\n' "$k" $((10 + i)) "$(ns_of "$k" "$i")"; done
  } >"$RUN/$k/etc-hosts"
  ip link add "$lan" type bridge
  ip addr add "10.231.$k.1/24" dev "$lan"
  ip link set "$lan" up
  # The machine's dockerd sets FORWARD to DROP and br_netfilter sends bridged frames
  # through it: let the LAN's own traffic pass.
  iptables -I FORWARD -i "$lan" -o "$lan" -j ACCEPT
  attach() { # attach NS LINK ADDR
    ip netns add "$1"
    ip link add "$2" type veth peer name "$2p"
    ip link set "$2p" netns "$1"
    ip -n "$1" link set "$2p" name lan0
    ip -n "$1" addr add "$3/24" dev lan0
    ip -n "$1" link set lan0 up
    ip -n "$1" link set lo up
    ip link set "$2" master "$lan"
    ip link set "$2" up
  }
  attach "$(lan_of $k)c" "$(lan_of $k)c" "10.231.$k.2"
  local i
  for i in $(seq 1 "$n"); do
    local ns dir data
    ns=$(ns_of $k "$i")
    dir="$RUN/$k/h$i"
    data="$DATA/$k/h$i"
    mkdir -p "$dir/exec" "$dir/disk" "$data"
    # The host's small disk, mounted before dockerd's mount namespace copies the mounts, so
    # both sides see the same filesystem (for sourceDirRoot and state dirs; see `disk`).
    mount -t tmpfs -o size=8m,mode=0755 berth-disk "$dir/disk"
    attach "$ns" "$ns" "10.231.$k.$((10 + i))"
    start_dockerd "$k" "$i"
  done
  for i in $(seq 1 "$n"); do
    wait_dockerd "$k" "$i" || { down "$k"; exit 1; }
  done
  # Each image saved once, loaded into every host at once.
  local img tar
  tar=$(mktemp /var/tmp/berth-hosts-image.XXXXXX)
  for img in "$@"; do
    docker save -o "$tar" "$img"
    local loads=()
    for i in $(seq 1 "$n"); do
      docker -H "unix://$RUN/$k/h$i/docker.sock" load -q -i "$tar" >/dev/null &
      loads+=($!)
    done
    # Only the loads: the dockerds are this shell's children too.
    wait "${loads[@]}"
  done
  rm -f "$tar"
  echo "$k"
}

down() {
  local k=$1 n i
  [ -d "$RUN/$k" ] || [ -e "/sys/class/net/$(lan_of "$k")" ] || return 0
  n=$(cat "$RUN/$k/hosts" 2>/dev/null || echo 0)
  for i in $(seq 1 "$n"); do
    kill_host_procs "$k" "$i"
  done
  # Wait for the killed processes to be gone before removing what they held.
  for i in $(seq 1 "$n"); do
    local ns; ns=$(ns_of "$k" "$i")
    wait_for "host $i's processes to exit" 10 ns_empty "$ns" || true
    umount "$RUN/$k/h$i/disk" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$ns" 2>/dev/null || true
    rm_cgroup "berth/$ns"
  done
  rm_cgroup "berth-hosts/$k"
  rm_cgroup "berth-hosts"
  kill_stale "$k"
  local c; c="$(lan_of "$k")c"
  ip netns del "$c" 2>/dev/null || true
  ip link del "$c" 2>/dev/null || true
  iptables -D FORWARD -i "$(lan_of "$k")" -o "$(lan_of "$k")" -j ACCEPT 2>/dev/null || true
  ip link del "$(lan_of "$k")" 2>/dev/null || true
  # The data-roots hold overlay mounts only inside the dead mount namespaces: plain files now.
  rm -rf "${DATA:?}/$k" "${RUN:?}/$k"
}

cmd=${1:-}
shift || true
case "$cmd" in
  up) [ $# -ge 1 ] || die "usage: hosts.sh up N [IMAGE...]"; up "$@" ;;
  down) [ $# -eq 1 ] || die "usage: hosts.sh down K"; down "$1" ;;
  kill-host)
    [ $# -eq 2 ] || die "usage: hosts.sh kill-host K I"
    kill_host_procs "$1" "$2"
    ip -n "$(ns_of "$1" "$2")" link set lan0 down
    # Off means off: a killed dockerd still tearing down would hold its data-root (and its
    # pid file) against the dockerd a boot-host starts right after.
    wait_for "host $2's processes to exit" 30 ns_empty "$(ns_of "$1" "$2")"
    ;;
  boot-host)
    [ $# -eq 2 ] || die "usage: hosts.sh boot-host K I"
    ip -n "$(ns_of "$1" "$2")" link set lan0 up
    # /run does not survive a power-off: nor does the dead dockerd's pid file, which names a
    # pid the new dockerd would take for a running one (a zombie, or the pid reused).
    rm -f "$RUN/$1/h$2/dockerd.pid"
    start_dockerd "$1" "$2"
    wait_dockerd "$1" "$2"
    ;;
  kill-dockerd)
    [ $# -eq 2 ] || die "usage: hosts.sh kill-dockerd K I"
    pid=$(cat "$RUN/$1/h$2/dockerd.pid")
    # Its managed containerd is its child; the shims (and containers) stay, as on a real host.
    pkill -9 -P "$pid" containerd 2>/dev/null || true
    kill -9 "$pid"
    ;;
  cut)
    [ $# -ge 3 ] || die "usage: hosts.sh cut K I PORT..."
    k=$1 i=$2; shift 2
    for port in "$@"; do
      ip netns exec "$(ns_of "$k" "$i")" iptables -I OUTPUT -d "10.231.$k.1" -p tcp --dport "$port" -j DROP
      ip netns exec "$(ns_of "$k" "$i")" iptables -I INPUT -s "10.231.$k.1" -p tcp --sport "$port" -j DROP
    done
    ;;
  heal)
    [ $# -eq 2 ] || die "usage: hosts.sh heal K I"
    ns=$(ns_of "$1" "$2")
    for chain in OUTPUT INPUT; do
      ip netns exec "$ns" iptables -S "$chain" | grep -- "10.231.$1.1/32" | grep -- '-j DROP' |
        sed "s/^-A /-D /" | while read -r rule; do
          # shellcheck disable=SC2086
          ip netns exec "$ns" iptables $rule
        done
    done
    ;;
  disk)
    [ $# -eq 2 ] || die "usage: hosts.sh disk K I"
    d="$RUN/$1/h$2/disk"
    mountpoint -q "$d" || die "host $2 of LAN $1 has no disk"
    echo "$d"
    ;;
  fill)
    [ $# -eq 2 ] || die "usage: hosts.sh fill K I"
    d="$RUN/$1/h$2/disk"
    mountpoint -q "$d" || die "host $2 of LAN $1 has no disk"
    dd if=/dev/zero of="$d/.fill" bs=64k 2>/dev/null || true
    ;;
  unfill)
    [ $# -eq 2 ] || die "usage: hosts.sh unfill K I"
    rm -f "$RUN/$1/h$2/disk/.fill"
    ;;
  *) die "usage: hosts.sh up|down|kill-host|kill-dockerd|cut|heal|disk|fill|unfill …" ;;
esac
