#!/bin/bash
# Elastic Beanstalk runs this as root before every deploy: the folder of the write-ahead log (WAL_DIR in
# .ebextensions), outside /var/app, which every deploy replaces, owned by the user the app runs as.
# CUBECACHE_STATE_DIR moves it (the local deploy play in test/eb-deploy.test.ts runs this under a temp root).
set -euo pipefail
dir="${CUBECACHE_STATE_DIR:-/var/lib/cubecache}"
install -d -m 0750 "$dir"
if id -u webapp >/dev/null 2>&1; then
  chown -R webapp:webapp "$dir"
fi
echo "cubecache: state folder $dir ready"
