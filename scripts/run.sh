#!/usr/bin/env bash
# Builds Ember and runs the local demo on this machine, in network namespaces (ember-demo-*):
# the portal and the relay (coturn) on a small simulated internet, the gateway behind a NAT
# router with the demo resource (web.corp.example) on its LAN, and the tunnel service signed in
# on a client host behind another NAT router; then the tray app as the desktop user. This
# machine's own DNS and routes are not touched: reach the resource by name from the client
# namespace (the command is printed). A veth (ember-demo0, 198.51.100.254) lets a browser here
# open the portal's sign-in page. Without a display (a server, CI), the app runs in a private
# Xvfb session and a screenshot of its window is saved. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run.sh: start it with sudo: namespaces and the tunnel service need root" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}"

scripts/deps.sh run
npm run build:ui --silent
cargo build -p ember-app -p ember-tunnel-service -p ember-portal -p ember-gateway -p ember-e2e
bin="$CARGO_TARGET_DIR/debug"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The demo world: portal, relay, gateway, resource, DNS, and the tunnel service (its socket in
# /run/ember, where the app looks), signed in as the demo user. It prints how to use it.
ready=$(mktemp -u /tmp/ember-demo-ready-XXXX)
"$bin/ember-e2e" demo --runtime-dir /run/ember --ready-file "$ready" &
pids+=($!)
for _ in $(seq 600); do
  [ -e "$ready" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "run.sh: the demo did not come up" >&2; exit 1; }
  sleep 0.2
done
[ -s "$ready" ] && echo "run.sh: the demo runs with problems (above); the app still starts"
rm -f "$ready"
"$bin/ember-tunnel" status --socket /run/ember/tunnel.sock || true

as_user() { # user, then a command; the user's groups (ember) are read afresh from /etc/group
  local user=$1; shift
  setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups "$@"
}

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  id -nG "$SUDO_USER" | grep -qw ember || {
    usermod -aG ember "$SUDO_USER"
    echo "run.sh: added $SUDO_USER to the group ember; log out and back in for other sessions"
  }
  echo "run.sh: starting the tray app as $SUDO_USER on your desktop"
  as_user "$SUDO_USER" env HOME="$(getent passwd "$SUDO_USER" | cut -d: -f6)" \
    DISPLAY="${DISPLAY:-}" WAYLAND_DISPLAY="${WAYLAND_DISPLAY:-}" XAUTHORITY="${XAUTHORITY:-}" \
    DBUS_SESSION_BUS_ADDRESS="${DBUS_SESSION_BUS_ADDRESS:-}" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-}" \
    "$bin/ember" &
  pids+=($!)
else
  session=$(mktemp -d /tmp/ember-run-XXXX); chmod 755 "$session"
  mkdir -p "$session/home/run" artifacts/run && chown -R embertest: "$session/home" && chmod 700 "$session/home/run"
  mkdir -p /tmp/.X11-unix && chmod 1777 /tmp/.X11-unix
  echo "run.sh: no display; running the tray app as embertest in a private Xvfb session (:77)"
  as_user embertest env -i PATH=/usr/bin:/bin HOME="$session/home" XDG_RUNTIME_DIR="$session/home/run" \
    LANG=C.UTF-8 NO_AT_BRIDGE=1 dbus-run-session -- bash -c '
      Xvfb :77 -screen 0 1280x800x24 -nolisten tcp & sleep 1
      export DISPLAY=:77
      status-notifier-watcher & sleep 0.3
      exec "$0"' "$bin/ember" &
  pids+=($!)
  sleep 6
  import -display :77 -window root artifacts/run/ember.png && echo "run.sh: the window: artifacts/run/ember.png"
fi
echo "run.sh: running; state as JSON: $bin/ember-tunnel status; Ctrl-C to stop"
wait "${pids[0]}"
