#!/usr/bin/env bash
# Builds Ember's Windows binaries on this Linux machine: `x86_64-pc-windows-gnu`, linked by
# mingw-w64, with Debian's Rust toolchain and std built for the target (scripts/cross/env.sh).
# The build is cached outside the clone; the last line on stdout is the built file's path, and
# cargo's output goes to stderr.
#
#   scripts/windows-build.sh [--release] exe   ember-tunnel.exe (the default)
#   scripts/windows-build.sh [--release] app   ember.exe, the tray app, with WebView2Loader.dll
#                                              beside it (links; not run here, see the README)
# Run it: `source scripts/cross/env.sh; use_wine; wine "$(scripts/windows-build.sh)" --help`.
# Needs: scripts/deps.sh (rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
args=()
if [ "${1:-}" = --release ]; then
  profile=release
  args+=(--release)
  shift
fi
what=${1:-exe}
case $what in
  exe) args+=(-p ember-tunnel-service --bin ember-tunnel) file=ember-tunnel.exe ;;
  app) args+=(-p ember-app --bin ember) file=ember.exe ;;
  *) echo "usage: $0 [--release] [exe|app]" >&2; exit 2 ;;
esac

target=x86_64-pc-windows-gnu
export CARGO_TARGET_DIR="${EMBER_WINDOWS_TARGET_DIR:-/var/cache/ember/windows-target}"
# shellcheck source=scripts/cross/env.sh
source scripts/cross/env.sh
cross_c_compiler "$target"

# `-Zbuild-std` with its default crates: std with unwinding, as the tests need (one std build
# for the binaries and scripts/test-windows.sh).
nice -n 10 "$cargo" build --locked -Zbuild-std --target "$target" "${args[@]}" >&2
echo "$CARGO_TARGET_DIR/$target/$profile/$file"
