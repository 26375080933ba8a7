#!/usr/bin/env bash
# Everything CI checks, in order: dependencies, formatting and lints, generated bindings, the
# Rust tests (unit, golden, IPC against the real service binary), the UI tests, and the GUI
# smoke test of the real app against the real service. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}"
export CARGO_TERM_COLOR=never
# A build from a fresh clone gains nothing from incremental state; it only fills the cache.
export CARGO_INCREMENTAL=0
# Every part a test needs is installed and started here: a test that would skip fails instead.
export EMBER_CI=1
started=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - started )) s)"; }

# Checks with build caches of their own (other compilers, other targets) run in the background,
# niced, while the Linux steps below wait on namespaces, browsers and containers; their logs are
# printed, and their failures fail the run, at the end.
logs=artifacts/logs
mkdir -p "$logs"
background_pids=()
background_names=()
background_titles=()
background() { # NAME TITLE COMMAND...
  local name=$1 title=$2
  shift 2
  # A session of its own, so that stopping it stops its compilers too.
  setsid nice -n 10 "$@" >"$logs/$name.log" 2>&1 &
  background_pids+=($!)
  background_names+=("$name")
  background_titles+=("$title")
  echo "started in the background: $title (log: $logs/$name.log)"
}
stop_background() {
  for pid in "${background_pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
}
trap stop_background EXIT
await_background() {
  local status=0 i result
  for i in "${!background_pids[@]}"; do
    if wait "${background_pids[$i]}"; then result=passed; else result=FAILED; status=1; fi
    step "${background_titles[$i]}: $result (its log follows)"
    cat "$logs/${background_names[$i]}.log"
  done
  background_pids=()
  return $status
}

step "dependencies"
scripts/deps.sh

step "background checks"
background cross-check "cross-check: the client crates' Windows and macOS code type-checked and clippy-clean" \
  scripts/cross-check.sh
background windows "Windows: ember-tunnel.exe and ember.exe linked with mingw-w64; the client crates' tests and the named-pipe IPC against the real exe under wine; the MSI built with wixl, read back with msitools and installed with wine's msiexec" \
  bash -c 'set -e
    tunnel_exe=$(scripts/windows-build.sh exe | tail -n 1)
    scripts/test-windows.sh
    app_exe=$(scripts/windows-build.sh app | tail -n 1)
    msi=artifacts/windows/Ember_ci_x64.msi
    EMBER_TUNNEL_EXE=$tunnel_exe EMBER_APP_EXE=$app_exe EMBER_MSI_OUT=$msi scripts/package-msi.sh
    python3 installer/tests/msi.py "$msi"'
background fuzz "fuzzing: every cargo-fuzz target for 30 s from its corpus (nightly; execs and execs/s per target)" \
  scripts/fuzz.sh 30

step "UI: build, types, lint"
npm run build:ui --silent
npm run lint:ui --silent
npm run build:admin --silent
npm run lint:admin --silent

step "Rust: format and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings


step "macOS pkg: its shell scripts pass shellcheck (the plist-against-the-code test runs with the Rust tests: macos_pkg)"
shellcheck installer/macos/build-pkg.sh installer/macos/uninstall.sh installer/macos/scripts/preinstall \
  installer/macos/scripts/postinstall scripts/package-msi.sh && echo "shellcheck: clean"

step "supply chain: cargo deny (bans, licenses, sources — advisories need a network database this machine cannot reach)"
"${EMBER_TOOLS_DIR:-/var/cache/ember/tools}/bin/cargo-deny" --locked check bans licenses sources

step "build the binaries (app, service, gateway, portal, end-to-end world)"
cargo build --locked -p ember-app -p ember-tunnel-service -p ember-gateway -p ember-portal -p ember-e2e

step "UI tests"
npm run test:ui --silent

step "GUI smoke test: real app, real service, Xvfb, WebDriver"
node tests/gui/smoke.mjs \
  --app "$CARGO_TARGET_DIR/debug/ember" \
  --service "$CARGO_TARGET_DIR/debug/ember-tunnel" \
  --driver "${EMBER_TOOLS_DIR:-/var/cache/ember/tools}/bin/tauri-driver" \
  --artifacts artifacts/gui

step "GUI end to end: sign in through the browser and the deep link, resources active and idle (demo world in namespaces)"
node tests/gui/signin.mjs \
  --app "$CARGO_TARGET_DIR/debug/ember" \
  --service "$CARGO_TARGET_DIR/debug/ember-tunnel" \
  --driver "${EMBER_TOOLS_DIR:-/var/cache/ember/tools}/bin/tauri-driver" \
  --demo "$CARGO_TARGET_DIR/debug/ember-e2e" \
  --artifacts artifacts/gui-signin

step "admin page in headless Chromium: sign in with an admin token, create a resource and a policy, a connected client receives it"
node admin-ui/tests/admin.mjs --portal "$CARGO_TARGET_DIR/debug/ember-portal" --artifacts artifacts/admin-page

step "Debian packages: build, lintian, install/sign-in/upgrade/purge on a clean Debian root (systemd-nspawn)"
scripts/test-packages.sh


# Same package set as the full run below, so both share one build.
step "keychain: the real Secret Service (an unlocked gnome-keyring in a private D-Bus session)"
keyring_home=$(mktemp -d)
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" HOME="$keyring_home" \
  XDG_RUNTIME_DIR="$keyring_home" EMBER_REQUIRE_KEYCHAIN=1 dbus-run-session -- bash -c '
    eval "$(printf ci | gnome-keyring-daemon --unlock --components=secrets)" >/dev/null
    eval "$(gnome-keyring-daemon --start --components=secrets)" >/dev/null
    cargo nextest run --locked --workspace -E "test(the_real_keychain)"'
rm -rf "$keyring_home"

step "Rust tests (includes: generated TypeScript bindings are up to date; last line is the summary)"
cargo nextest run --workspace --locked --no-fail-fast

await_background
step "all checks passed"
