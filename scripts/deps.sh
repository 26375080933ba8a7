#!/usr/bin/env bash
# Installs what building and testing Ember needs on Debian 12. Idempotent: installs only what
# is missing. Needs root (apt-get, the test user).
#   scripts/deps.sh        everything the tests need
#   scripts/deps.sh run    only what building and running Ember needs
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: Tauri's WebKitGTK and tray libraries.
BUILD_PACKAGES=(build-essential pkg-config libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev)
# GUI tests: a headless X server, a D-Bus session, a tray host, WebDriver for WebKitGTK.
GUI_TEST_PACKAGES=(xvfb xauth dbus dbus-x11 imagemagick webkit2gtk-driver haskell-status-notifier-item-utils
  xdg-utils desktop-file-utils libglib2.0-bin fonts-dejavu-core util-linux procps
  gnome-keyring libsecret-tools dunst libnotify-bin x11-utils)
# Network tests and the demo: namespaces, NAT routers, loss, the real relay, DNS servers for the
# simulated networks (dnsmasq-base: the binary only, no system service touching this machine's
# DNS), throughput; the benchmark's anchors (wireguard-go, OpenVPN with openssl certificates).
NETWORK_TEST_PACKAGES=(iproute2 nftables conntrack coturn iperf3 curl dnsmasq-base
  wireguard-go wireguard-tools openvpn openssl)
# Portal tests: PostgreSQL server binaries (the tests start a throwaway cluster themselves).
PORTAL_TEST_PACKAGES=(postgresql)
# The admin page's test (admin-ui/tests/admin.mjs): headless Chromium and its WebDriver.
ADMIN_PAGE_TEST_PACKAGES=(chromium chromium-driver)
# Package tests (scripts/test-packages.sh): a clean Debian root booted with systemd-nspawn,
# lintian, manual pages from --help; python3 signs the installed service in.
PACKAGE_TEST_PACKAGES=(debootstrap systemd-container lintian help2man zstd python3)
# The cross-check gate (scripts/cross-check.sh): Debian's rustc 1.96 with the standard library's
# source and clippy, to type-check the Windows and macOS code; clang and llvm-ar for ring's C.
CROSS_CHECK_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-clippy clang-14 llvm)
# Windows binaries built and run here (scripts/windows-build.sh, scripts/test-windows.sh):
# mingw-w64 compiles ring's C and links for x86_64-pc-windows-gnu; wine 8 runs the result.
WINDOWS_PACKAGES=(gcc-mingw-w64-x86-64 wine wine64)
# The MSI (scripts/package-msi.sh, installer/tests/msi.py): wixl builds it, msitools read it
# back, osslsigncode checks wintun.dll's signature (against ca-certificates' roots).
# shellcheck: the macOS pkg's scripts, which cannot run here.
INSTALLER_PACKAGES=(wixl msitools osslsigncode ca-certificates shellcheck)

missing=()
for package in "${BUILD_PACKAGES[@]}" "${GUI_TEST_PACKAGES[@]}" "${NETWORK_TEST_PACKAGES[@]}" "${PORTAL_TEST_PACKAGES[@]}" \
  "${ADMIN_PAGE_TEST_PACKAGES[@]}" "${PACKAGE_TEST_PACKAGES[@]}" "${CROSS_CHECK_PACKAGES[@]}" "${WINDOWS_PACKAGES[@]}" "${INSTALLER_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The group whose members may use the tunnel service, and an unprivileged member of it for the
# GUI tests (the tray app runs as a normal desktop user, never as root).
getent group ember >/dev/null || groupadd --system ember
id embertest >/dev/null 2>&1 || useradd --create-home --groups ember embertest
id -nG embertest | grep -qw ember || usermod -aG ember embertest

# WebDriver front end for Tauri apps, from crates.io, kept outside the clone.
TOOLS="${EMBER_TOOLS_DIR:-/var/cache/ember/tools}"
if [ "${1:-}" != run ] && [ ! -x "$TOOLS/bin/tauri-driver" ]; then
  echo "deps: installing tauri-driver"
  cargo install tauri-driver --version '^2' --locked --root "$TOOLS" --quiet
fi

# Supply-chain checks (deny.toml), from crates.io, kept outside the clone. cargo-fuzz is
# installed by scripts/fuzz.sh when it first runs.
if [ "${1:-}" != run ] && [ ! -x "$TOOLS/bin/cargo-deny" ]; then
  echo "deps: installing cargo-deny"
  cargo install cargo-deny --version '^0.20' --locked --root "$TOOLS" --quiet
fi

npm ci --no-audit --no-fund --loglevel=error
