#!/usr/bin/env bash
# Everything CI checks, in order: dependencies, formatting and lints, generated bindings, the
# Rust tests (unit, golden, IPC against the real service binary), the UI tests, and the GUI
# smoke test of the real app against the real service. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}"
export CARGO_TERM_COLOR=never
started=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - started )) s)"; }

step "dependencies"
scripts/deps.sh

step "UI: build, types, lint"
npm run build:ui --silent
npm run lint:ui --silent

step "Rust: format and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cross-check: the client crates' Windows and macOS code type-checked and clippy-clean"
scripts/cross-check.sh

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

step "Debian packages: build, lintian, install/sign-in/upgrade/purge on a clean Debian root (systemd-nspawn)"
scripts/test-packages.sh

step "fuzzing: every cargo-fuzz target for 30 s from its corpus (nightly; execs and execs/s per target)"
scripts/fuzz.sh 30

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
