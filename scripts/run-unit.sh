#!/usr/bin/env bash
# Runs a systemd unit's ExecStart= as systemd would, where systemd does not run (the clean
# Debian root of tests/package.rs, the hosts of scripts/cluster.sh): the EnvironmentFile
# read by systemd's rules (KEY=VALUE a line; lines starting with # or ; are comments; white
# space around key and value dropped; one pair of surrounding quotes removed; otherwise the
# value as is, spaces included), then the command line split on white space, each unbraced
# $VAR replaced by its value split on white space (systemd's rule for $VAR; ${VAR} would be
# one word, and berth's units use no other form).
#
#   bash scripts/run-unit.sh UNIT-FILE [ENV-FILE [BINARY]]
#
# ENV-FILE replaces the unit's EnvironmentFile; BINARY replaces /usr/bin/berth.
set -euo pipefail
unit=$1
env_file=${2:-}
bin=${3:-}
exec_line=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$exec_line" ] || { echo "run-unit: $unit has no ExecStart" >&2; exit 2; }
[ -n "$env_file" ] || env_file=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$unit")
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; printf '%s' "${s%"${s##*[![:space:]]}"}"; }
if [ -n "$env_file" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line=$(trim "$line")
    case "$line" in '' | '#'* | ';'*) continue ;; esac
    [[ "$line" == *=* ]] || continue
    key=$(trim "${line%%=*}")
    value=$(trim "${line#*=}")
    case "$value" in \"*\" | \'*\') [ "${#value}" -ge 2 ] && value=${value:1:${#value}-2} ;; esac
    export "$key=$value"
  done <"$env_file"
fi
[ -z "$bin" ] || exec_line=${exec_line//\/usr\/bin\/berth/$bin}
read -ra words <<<"$exec_line"
args=()
for w in "${words[@]}"; do
  if [[ "$w" =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
    read -ra split <<<"${!BASH_REMATCH[1]:-}"
    args+=("${split[@]}")
  else
    args+=("$w")
  fi
done
exec "${args[@]}"
