#!/usr/bin/env bash
# berth's main job, on this host: install and start what berth needs (scripts/setup.sh), build
# berth, apply the seed manifest to the local etcd, and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet
berth=target/debug/berth
"$berth" apply -f manifests/httpd-bundle.yaml
"$berth" get bundles -o wide
