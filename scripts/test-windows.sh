#!/usr/bin/env bash
# Ember's Windows code, run: the tests of the client crates built for `x86_64-pc-windows-gnu`
# with mingw-w64 (scripts/windows-build.sh's toolchain and cache) and run under wine, headless.
# Among them tunnel-service/tests/ipc_windows.rs drives the real `ember-tunnel.exe run` over its
# named pipe. What wine cannot show (the pipe's DACL, LocalSystem, the SCM, Wintun) is in the
# README, not faked here.
#
#   scripts/test-windows.sh             all of them; prints the test count
#   scripts/test-windows.sh FILTER      only tests whose name contains FILTER
# Needs: scripts/deps.sh (rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 wine wine64).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
crates=(ember-protocol ember-ipc ember-engine ember-turn ember-client ember-packet ember-dns ember-tunnel-service)
export CARGO_TARGET_DIR="${EMBER_WINDOWS_TARGET_DIR:-/var/cache/ember/windows-target}"
# shellcheck source=scripts/cross/env.sh
source scripts/cross/env.sh
cross_c_compiler "$target"
use_wine

args=()
for crate in "${crates[@]}"; do args+=(-p "$crate"); done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
started=$(date +%s)
# Unit and integration tests, not doctests (rustdoc would need the runner set up separately).
status=0
nice -n 10 "$cargo" test --locked -Zbuild-std --target "$target" "${args[@]}" --lib --bins --tests \
  --no-fail-fast -- "$@" 2>&1 | tee "$log" || status=1

# One "test result:" line per test binary.
read -r passed failed ignored < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i
      if ($(i+1) ~ /^failed/) f += $i
      if ($(i+1) ~ /^ignored/) g += $i
    }
  } END { print p + 0, f + 0, g + 0 }' "$log")
echo "windows tests under wine: $passed passed, $failed failed, $ignored ignored ($(( $(date +%s) - started )) s)"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
