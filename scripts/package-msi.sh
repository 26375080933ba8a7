#!/usr/bin/env bash
# Builds Ember's Windows installer on this Linux machine with msitools' `wixl`, from
# installer/windows/ember.wxs (installer/windows/README.md says what it installs).
#
#   scripts/package-msi.sh [--release]
#
# Inputs (environment):
#   EMBER_TUNNEL_EXE  ember-tunnel.exe to ship; without it this script builds it with
#                     scripts/windows-build.sh (x86_64-pc-windows-gnu, mingw-w64)
#   EMBER_APP_EXE     ember.exe (the tray app) to ship, with WebView2Loader.dll beside it
#                     (scripts/windows-build.sh app); without it the MSI has no tray app, and so
#                     no Start-menu entry, ember:// handler or autostart — it says so below
#   EMBER_MSI_OUT     the MSI to write (default artifacts/windows/Ember_<version>_x64.msi)
# wintun.dll comes from the crates.io package wintun-bindings (it ships the official Wintun
# build), is checked against installer/windows/wintun.sha256 and its Authenticode signature
# (WireGuard LLC) before it goes in.
# Needs: scripts/deps.sh (wixl, msitools, osslsigncode, gcc-mingw-w64-x86-64, rustc-web…).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

profile=debug
case "${1:-}" in
  --release) profile=release ;;
  "") ;;
  *) echo "package-msi.sh: unknown argument $1" >&2; exit 2 ;;
esac

started=$(date +%s)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
out=${EMBER_MSI_OUT:-artifacts/windows/Ember_${version}_x64.msi}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# 1. ember-tunnel.exe
tunnel_exe=${EMBER_TUNNEL_EXE:-}
if [ -z "$tunnel_exe" ]; then
  build_args=()
  [ "$profile" = release ] && build_args+=(--release)
  tunnel_exe=$(scripts/windows-build.sh "${build_args[@]}" exe | tail -n 1)
fi
[ -f "$tunnel_exe" ] || { echo "package-msi: no ember-tunnel.exe at $tunnel_exe" >&2; exit 1; }
# Without its debug information (a debug build carries ~250 MB of it).
x86_64-w64-mingw32-strip --strip-debug -o "$stage/ember-tunnel.exe" "$tunnel_exe"

# 2. wintun.dll, from the crate that ships it; cargo checks the crate against the index.
wintun_crate=wintun-bindings
wintun_version=0.7.40
cargo_home=${CARGO_HOME:-$HOME/.cargo}
find_crate() { find "$cargo_home/registry/cache" -name "$wintun_crate-$wintun_version.crate" -print -quit 2>/dev/null || true; }
crate_file=$(find_crate)
if [ -z "$crate_file" ]; then
  echo "package-msi: fetching $wintun_crate $wintun_version from crates.io"
  fetch_dir=$(mktemp -d)
  mkdir -p "$fetch_dir/src" && : > "$fetch_dir/src/lib.rs"
  printf '[package]\nname = "wintun-fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s = "=%s"\n' \
    "$wintun_crate" "$wintun_version" > "$fetch_dir/Cargo.toml"
  (cd "$fetch_dir" && cargo fetch --quiet)
  rm -rf "$fetch_dir"
  crate_file=$(find_crate)
fi
[ -n "$crate_file" ] || { echo "package-msi: $wintun_crate $wintun_version is not in $cargo_home/registry" >&2; exit 1; }
tar -xzOf "$crate_file" "$wintun_crate-$wintun_version/wintun/bin/amd64/wintun.dll" > "$stage/wintun.dll"
pinned=$(tr -d '[:space:]' < "$root/installer/windows/wintun.sha256")
actual=$(sha256sum "$stage/wintun.dll" | cut -d' ' -f1)
[ "$actual" = "$pinned" ] ||
  { echo "package-msi: wintun.dll ($actual) does not match installer/windows/wintun.sha256" >&2; exit 1; }
# The chain is checked at the signature's timestamp (the signing certificate expired after it
# signed, as code-signing certificates do). Offline: osslsigncode from 2.6 on fetches revocation
# lists unless told not to (Debian 12's 2.5 never does).
ca=/etc/ssl/certs/ca-certificates.crt
verify_args=(-CAfile "$ca" -TSA-CAfile "$ca")
verify_help=$(osslsigncode verify --help 2>&1 || true)
grep -q -- -ignore-crl <<<"$verify_help" && verify_args+=(-ignore-crl)
signature=$(osslsigncode verify "${verify_args[@]}" -in "$stage/wintun.dll" 2>&1) ||
  { echo "$signature" >&2; echo "package-msi: wintun.dll's Authenticode signature does not verify" >&2; exit 1; }
if ! grep -q "^Signature verification: ok" <<<"$signature" ||
  ! sed -n "/^Signer's certificate:/,/Issuer/p" <<<"$signature" | grep -q "/O=WireGuard LLC/CN=WireGuard LLC$"; then
  echo "$signature" >&2; echo "package-msi: wintun.dll is not signed by WireGuard LLC" >&2; exit 1
fi
echo "package-msi: wintun.dll $wintun_version from $wintun_crate: SHA-256 pinned, signed by WireGuard LLC"

# 3. The tray app and the icon.
wixl_defines=(-D "Version=$version")
if [ -n "${EMBER_APP_EXE:-}" ]; then
  x86_64-w64-mingw32-strip --strip-debug -o "$stage/ember.exe" "$EMBER_APP_EXE"
  # The WebView2 loader the build put beside the app.
  loader=$(dirname "$EMBER_APP_EXE")/WebView2Loader.dll
  [ -f "$loader" ] || { echo "package-msi: no WebView2Loader.dll beside $EMBER_APP_EXE" >&2; exit 1; }
  cp "$loader" "$stage/WebView2Loader.dll"
  wixl_defines+=(-D WithApp=1)
else
  echo "package-msi: NOTE: no EMBER_APP_EXE: this MSI has no tray app (ember.exe), so no Start-menu entry, ember:// handler or autostart"
fi
cp src-tauri/icons/icon.ico "$stage/ember.ico"

# 4. The MSI. wixl finds the sources relative to the folder it runs in. It has no element for
#    the service's failure actions: service-config.sql adds them (restart after 2 s, three
#    times, also when the service stops with an error) and schedules MsiConfigureServices; one
#    statement per line, as msibuild takes them.
mkdir -p "$(dirname "$out")"
out=$(realpath "$out")
(cd "$stage" && wixl -a x64 "${wixl_defines[@]}" -o ember.msi "$root/installer/windows/ember.wxs")
mapfile -t statements < installer/windows/service-config.sql
msibuild "$stage/ember.msi" -q "${statements[@]}"
# The silent-install properties pass from the client to the elevated server side only when they
# are secure; msibuild's SQL splits on the ';' inside the value, so the row goes in as a table.
msiinfo export "$stage/ember.msi" Property > "$stage/Property.idt"
sed -i 's/^\(SecureCustomProperties\t[^\r]*\)/\1;PORTAL_URL;ACCOUNT/' "$stage/Property.idt"
msibuild "$stage/ember.msi" -i "$stage/Property.idt"
mv "$stage/ember.msi" "$out"
echo "package-msi: built $out ($(stat -c %s "$out") bytes, $(( $(date +%s) - started )) s)"
