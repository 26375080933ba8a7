#!/usr/bin/env bash
# The data-plane benchmark (issue 5): builds the release binaries, then runs `ember-e2e bench`
# in network namespaces and prints one table: TCP throughput (iperf3) and CPU per GB through
# Ember, wireguard-go and OpenVPN and on the raw path, all measured in the same run between
# the same client and gateway hosts; Ember's time to first byte (cold and warm); idle
# datagrams on the client's WAN; the tunnel service's wake-ups with 1 and 50 idle connections;
# memory of the tunnel service and the gateway, and of the service with 1,000 resources.
#   sudo scripts/bench-dataplane.sh            full run (≈ 12 min: a 5-minute idle window)
#   sudo scripts/bench-dataplane.sh --quick    short windows, to check the benchmark itself
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-dataplane.sh: needs root (network namespaces)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}"
cargo build --release -p ember-e2e -p ember-portal -p ember-gateway -p ember-tunnel-service
exec "$CARGO_TARGET_DIR/release/ember-e2e" bench "$@"
