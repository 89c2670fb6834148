#!/usr/bin/env bash
# berth's main job on this host: install and start what berth needs (scripts/setup.sh), build
# berth and the seed's image (pcmk:httpd, busybox httpd FROM scratch with an OCF agent for it),
# then `berth up` with the seed manifest: a local etcd, a controller and a node agent, ending
# with three replicas answering HTTP on 127.0.2.112-114:80, each httpd started and monitored
# by berth's remote agent. Ctrl-C stops berth (the containers keep running;
# `berth delete bundle httpd-bundle` with berth up running removes them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet
# The seed's primitive is ocf:heartbeat:apache: the image gets the project's OCF agent for
# busybox httpd and what this berth build needs to run inside as the remote agent.
bash scripts/build-test-image.sh --ocf target/debug/berth pcmk:httpd
# The seed maps /srv/www into every replica; give it a page when there is none yet.
if [ ! -e /srv/www ]; then
  mkdir -p /srv/www
  echo '<h1>berth: httpd-bundle</h1>' > /srv/www/index.html
fi
# Arguments go to `berth up` (--name, --data-dir). BERTH_SEED_MANIFEST applies another
# manifest instead of the seed (the first-run test uses a copy under names and addresses of
# its own, so that it never depends on what a user's own run left on this host).
exec target/debug/berth up -f "${BERTH_SEED_MANIFEST:-manifests/httpd-bundle.yaml}" "$@"
