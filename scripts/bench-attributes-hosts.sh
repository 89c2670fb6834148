#!/usr/bin/env bash
# Measures how soon an attribute a replica's crm_attribute writes on one host is read by
# another replica's crm_attribute on another host: three Docker hosts (scripts/hosts.sh), the
# redis bundle of tests/clustered.rs, 100 writes 110 ms apart, the reader polling in its own
# container (both clocks are this machine's). Prints the median and the max.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
bash scripts/build-service-images.sh redis
cargo nextest run --test clustered --run-ignored only --no-capture \
  bench_an_attribute_written_on_one_host_is_read_on_another 2>&1 | grep -E '^attribute written|FAIL|panicked'
