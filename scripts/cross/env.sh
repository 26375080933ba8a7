# shellcheck shell=bash
# Sourced by the scripts that build Ember for Windows and macOS on this Linux machine
# (cross-check.sh, windows-build.sh, test-windows.sh): Debian's Rust toolchain and a C compiler
# for each target's C code (ring, in boringtun and rustls).
#
# rustup offers only the Linux target here, so this uses Debian's rustc 1.96 (`rustc-web`, with
# the standard library's source in `rust-web-src`) and builds std for each target
# (`-Zbuild-std`, allowed on a stable compiler by RUSTC_BOOTSTRAP).
#
# After sourcing: `$cargo` is Debian's cargo; call `cross_c_compiler TARGET` for each target.
# Needs the caller's working directory to be the repository's root.

export CARGO_TERM_COLOR=never
# Debian's toolchain, not rustup's: /usr/bin first so `cargo clippy` finds Debian's cargo-clippy
# and clippy-driver, and RUSTC set so cargo never asks rustup for a rust-src component.
export PATH="/usr/bin:$PATH"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
# shellcheck disable=SC2034 # used by the scripts that source this file
cargo=/usr/bin/cargo

# The C compiler and archiver for TARGET's C code, as the `cc` crate reads them.
# - windows-gnu: mingw-w64, which also links the binaries.
# - the rest (windows-msvc, Apple): clang for the target, against clang's own headers only
#   (`-nostdlibinc`): ring needs no libc headers when RING_CORE_NOSTDLIBINC is set, and for Apple
#   targets a stand-in TargetConditionals.h (scripts/cross/) replaces the SDK's. Nothing is
#   linked for these targets (no MSVC linker, no macOS SDK).
cross_c_compiler() {
  local target=$1 var=${1//-/_}
  case $target in
    x86_64-pc-windows-gnu)
      export "CC_$var=x86_64-w64-mingw32-gcc" "AR_$var=x86_64-w64-mingw32-ar"
      export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
      ;;
    *)
      export "CC_$var=clang-14" "AR_$var=llvm-ar-14" \
        "CFLAGS_$var=--target=$target -nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -I$(pwd)/scripts/cross"
      ;;
  esac
}

# Runs Windows programs under wine 8 (Debian 12) in a prefix kept outside the clone, headless
# and quiet, and makes `cargo test/run --target x86_64-pc-windows-gnu` run through it. The
# prefix is made once (under a lock, so parallel runs share it) and gets the stand-in
# bcryptprimitives.dll that wine 8 lacks and every Rust binary imports (scripts/cross/wine/).
use_wine() {
  export WINEPREFIX="${EMBER_WINE_PREFIX:-/var/cache/ember/wine-prefix}" WINEARCH=win64 WINEDEBUG=-all
  # No Mono or Gecko installer prompts (nothing of Ember needs .NET or an HTML engine), no window.
  export WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
  local shim_source shim
  shim_source="$(pwd)/scripts/cross/wine/bcryptprimitives.c"
  shim="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
  mkdir -p "$(dirname "$WINEPREFIX")"
  (
    flock 9
    if [ ! -f "$WINEPREFIX/system.reg" ]; then
      echo "wine: creating the prefix $WINEPREFIX" >&2
      wine wineboot --init >/dev/null 2>&1
      wineserver --wait
    fi
    if [ ! -f "$shim" ] || [ "$shim_source" -nt "$shim" ]; then
      x86_64-w64-mingw32-gcc -shared -O2 -Wall -Werror -o "$shim.tmp" "$shim_source" -ladvapi32
      mv "$shim.tmp" "$shim"
    fi
  ) 9>"$WINEPREFIX.lock"
  # A wineserver that stays a minute after its last program: one that exits as the next
  # program starts (cargo runs test binaries back to back) kills it with "wine client error:
  # recvmsg: Connection reset by peer". If one already serves the prefix, this exits at once.
  wineserver --persistent=60 2>/dev/null || true
}
