#!/usr/bin/env bash
# Runs every check a change must pass: set-up (scripts/setup.sh starts dockerd and etcd when
# they are not running), formatting, clippy, and the whole test suite against the real etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The clustered services' images (tests/clustered.rs), from Debian's packages: built once,
# then cached (a few minutes the first time).
bash scripts/build-service-images.sh
# A fresh clone builds once: incremental state would only take disk (CI has run out of it).
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# The statically linked berth (any image, any libc or none): one test runs it as the remote
# agent in an image without a C library. A debug build, to keep CI short.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --target x86_64-unknown-linux-gnu --bin berth
export BERTH_STATIC_BIN="$PWD/target/x86_64-unknown-linux-gnu/debug/berth"
# The Debian package, from that same debug build (tests/package.rs installs it), checked.
BERTH_DEB="$PWD/$(bash scripts/build-deb.sh --debug)"
export BERTH_DEB
bash scripts/check-deb.sh "$BERTH_DEB"
# The bounded fuzz run (tests/fuzz.rs): seconds per target, from a fixed seed, so that CI
# replays (a prefix of) a sequence that was run longer before it was committed; exploratory
# runs leave BERTH_FUZZ_SEED unset (a new seed each time, printed).
export BERTH_FUZZ_SECS="${BERTH_FUZZ_SECS:-15}"
export BERTH_FUZZ_SEED="${BERTH_FUZZ_SEED:-20261125}"
# The clustered services (tests/clustered.rs: three hosts of mariadb, redis or rabbitmq on
# two cores) run after the rest, on their own: beside them, the timing-sensitive fencing
# tests lost their margins to the machine's load.
# Every test removes what it started: containers of a test's nodes that outlive the run (and
# were not there before it) fail it, named.
berth_containers() { docker ps -aq --no-trunc --filter label=berth.io/node | sort; }
if cargo nextest --version >/dev/null 2>&1; then
  status=0
  before=$(berth_containers)
  cargo nextest run --no-fail-fast -E 'not binary(clustered)' || status=$?
  left=$(comm -13 <(echo "$before") <(berth_containers))
  if [ -n "$left" ]; then
    echo "test.sh: the tests left these containers behind:" >&2
    # shellcheck disable=SC2086
    docker inspect --format '{{.Name}} {{.State.Status}} {{index .Config.Labels "berth.io/node"}}' $left >&2
    status=1
  fi
  cargo nextest run --no-fail-fast --test clustered || status=$?
  # The node agent's, the primitive's and the fault tests again, against podman's
  # Docker-compatible API (scripts/podman.sh): fails if podman stops working here.
  bash scripts/podman.sh test || status=$?
  exit "$status"
else
  cargo test --no-fail-fast
fi
