#!/usr/bin/env bash
# Builds Ember and runs it on this machine: the demo portal (its sign-in page on
# http://127.0.0.1:8080, the default portal of the service), the tunnel service as root, the
# tray app as the desktop user. Without a display (a server, CI), the app runs in a private Xvfb session and a
# screenshot of its window is saved, so you can see what it shows. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run.sh: start it with sudo: the tunnel service needs root" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}"

scripts/deps.sh run
npm run build:ui --silent
cargo build -p ember-app -p ember-tunnel-service -p ember-portal
bin="$CARGO_TARGET_DIR/debug"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The portal never needs root; its demo database lives outside the checkout.
portal_dir=/var/lib/ember-demo-portal
mkdir -p "$portal_dir" && chown embertest: "$portal_dir"
setpriv --reuid=embertest --regid="$(id -g embertest)" --init-groups \
  "$bin/ember-portal" --demo --database "sqlite://$portal_dir/portal.db" &
pids+=($!)
sleep 2

"$bin/ember-tunnel" run &
pids+=($!)
for _ in $(seq 100); do [ -S /run/ember/tunnel.sock ] && break; sleep 0.1; done
"$bin/ember-tunnel" status

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
