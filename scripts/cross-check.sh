#!/usr/bin/env bash
# The cross-check gate: `cargo clippy -D warnings` (which type-checks too) of every crate that
# ships on the client, for Windows and both macOS architectures, on this Linux machine. Nothing is
# linked or run (no MSVC linker, no macOS SDK): this proves the Windows and macOS code compiles
# and is lint-clean, so it can no longer rot unseen.
#
# rustup offers only the Linux target here, so this uses Debian's rustc 1.96 (`rustc-web`, with
# the standard library's source in `rust-web-src`) and builds std for each target
# (`-Zbuild-std`, allowed on a stable compiler by RUSTC_BOOTSTRAP). ring's C code (boringtun,
# rustls) is compiled with clang for the target, against clang's own headers only
# (`-nostdlibinc`): ring needs no libc headers when RING_CORE_NOSTDLIBINC is set, and for Apple
# targets a stand-in TargetConditionals.h (scripts/cross/) replaces the SDK's.
#
#   scripts/cross-check.sh                      all three targets
#   scripts/cross-check.sh aarch64-apple-darwin one target
# Needs: scripts/deps.sh (rustc-web cargo-web rust-web-src rust-web-clippy clang-14 llvm).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-pc-windows-msvc aarch64-apple-darwin x86_64-apple-darwin)
crates=(ember-app ember-tunnel-service ember-engine ember-io ember-ipc ember-protocol ember-dns
  ember-portal-client ember-logging)

# The std builds and dependencies are cached outside the clone; a separate directory from the
# Linux build's, since a different compiler would invalidate it.
export CARGO_TARGET_DIR="${EMBER_CROSS_TARGET_DIR:-/var/cache/ember/cross-target}"
export CARGO_TERM_COLOR=never
# Debian's toolchain, not rustup's: /usr/bin first so `cargo clippy` finds Debian's cargo-clippy
# and clippy-driver, and RUSTC set so cargo never asks rustup for a rust-src component.
export PATH="/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
cargo=/usr/bin/cargo

clang_flags="-nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -I$root/scripts/cross"
for target in "${targets[@]}"; do
  var=${target//-/_}
  export "CC_$var=clang-14" "AR_$var=llvm-ar-14" "CFLAGS_$var=--target=$target $clang_flags"
done

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
