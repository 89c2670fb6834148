#!/usr/bin/env bash
# Rolling update benchmark for BENCHMARKS.md: a 3- and a 10-replica bundle of busybox httpd
# (real etcd and dockerd, one node agent, one controller), image changed, default strategy
# (one replica at a time). Prints, per size and run, the time apply --wait took for the
# whole rollout, per replica, and the fewest replicas answering HTTP in any 50 ms sample.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
for n in 3 10; do
  for r in $(seq 1 "$RUNS"); do
    BERTH_ROLLOUT_REPLICAS=$n cargo nextest run --test rollout --no-capture \
      a_new_image_rolls_out 2>&1 | grep '^rollout of'
  done
done
