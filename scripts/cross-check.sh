#!/usr/bin/env bash
# The cross-check gate: `cargo clippy -D warnings` (which type-checks too) of every crate that
# ships on the client, for Windows and both macOS architectures, on this Linux machine. Nothing is
# linked or run (no MSVC linker, no macOS SDK): this proves the Windows and macOS code compiles
# and is lint-clean, so it can no longer rot unseen. Windows binaries are also linked and run
# (under wine): scripts/windows-build.sh, scripts/test-windows.sh.
#
# Debian's toolchain and the C compilers for ring: scripts/cross/env.sh.
#
#   scripts/cross-check.sh                      all three targets
#   scripts/cross-check.sh aarch64-apple-darwin one target
# Needs: scripts/deps.sh (rustc-web cargo-web rust-web-src rust-web-clippy clang-14 llvm).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-pc-windows-msvc aarch64-apple-darwin x86_64-apple-darwin)
crates=(ember-app ember-tunnel-service ember-client ember-packet ember-engine ember-turn ember-io ember-ipc ember-protocol ember-dns ember-fsutil
  ember-portal-client ember-logging)

# The std builds and dependencies are cached outside the clone; a separate directory from the
# Linux build's, since a different compiler would invalidate it.
export CARGO_TARGET_DIR="${EMBER_CROSS_TARGET_DIR:-/var/cache/ember/cross-target}"
# shellcheck source=scripts/cross/env.sh
source scripts/cross/env.sh
for target in "${targets[@]}"; do cross_c_compiler "$target"; done

status=0
for target in "${targets[@]}"; do
  started=$(date +%s)
  args=()
  for crate in "${crates[@]}"; do args+=(-p "$crate"); done
  if nice -n 10 "$cargo" clippy --locked --keep-going -Zbuild-std=std,panic_abort --target "$target" "${args[@]}" \
    -- -D warnings; then
    echo "cross-check: $target clean ($(( $(date +%s) - started )) s)"
  else
    echo "cross-check: $target FAILED ($(( $(date +%s) - started )) s)"
    status=1
  fi
done
exit $status
