#!/usr/bin/env bash
# The tray app's benchmark (issue 6): builds release binaries, then runs tests/gui/bench.mjs,
# which brings up the demo world in network namespaces and a private desktop session (Xvfb,
# D-Bus, StatusNotifier watcher, gnome-keyring), signs in through the tray and the browser
# flow, and prints one table: cold start → window visible, service state change → tray menu
# updated, and memory idle after sign-in (window open, and in the tray only). ≈ 3 min after
# the build.
#   sudo scripts/bench-app.sh [--starts N] [--changes N]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-app.sh: needs root (network namespaces)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}"
scripts/deps.sh  # Debian packages, the test user, the tools (idempotent)
npm run build:ui --silent
cargo build --release --locked -p ember-app -p ember-tunnel-service -p ember-e2e -p ember-gateway -p ember-portal
release="$CARGO_TARGET_DIR/release"
exec node tests/gui/bench.mjs --app "$release/ember" --service "$release/ember-tunnel" \
  --demo "$release/ember-e2e" --artifacts artifacts/bench-app "$@"
