#!/usr/bin/env bash
# Builds Ember's Debian packages with cargo-deb: `ember` (tray app + tunnel service),
# `ember-portal` and `ember-gateway` (once the gateway binary exists). See installer/README.md.
#
#   scripts/package.sh --release          the real packages: release profile (≈ 8–10 min cold)
#   scripts/package.sh                    CI packages: the dev-profile binaries the tests already
#                                         built, stripped — same files, scripts and units, no
#                                         second compilation of the workspace
# Options: --out DIR (default artifacts/packages), --revision N (Debian revision, default 1),
#          --only NAME (repeatable: ember, ember-portal, ember-gateway).
# Prints the paths of the packages it wrote, one per line, last.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}"
TOOLS="${EMBER_TOOLS_DIR:-/var/cache/ember/tools}"
CARGO_DEB_VERSION=3.8.0

profile=dev
out=artifacts/packages
revision=1
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    --out) out=$2; shift ;;
    --revision) revision=$2; shift ;;
    --only) only+=("$2"); shift ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
wanted() { [ ${#only[@]} -eq 0 ] || printf '%s\n' "${only[@]}" | grep -qx "$1"; }

# cargo-deb, pinned: it names the dev profile "unsupported" and may refuse it in a later version.
if ! "$TOOLS/bin/cargo-deb" --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
  echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION into $TOOLS"
  cargo install cargo-deb --version "=$CARGO_DEB_VERSION" --locked --root "$TOOLS" --quiet
fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
deb_version="$version-$revision"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
date=$(git log -1 --format=%cD 2>/dev/null || date -R)

# A changelog per package, for the version being built (policy wants one; lintian checks it).
mkdir -p installer/debian/build
for name in ember ember-portal ember-gateway; do
  cat >"installer/debian/build/$name.changelog" <<EOF
$name ($deb_version) unstable; urgency=medium

  * Built from the Ember repository, commit $commit.

 -- Ember maintainers <maintainers@ember.example>  $date
EOF
done

# The tray app embeds the web UI at compile time.
if [ ! -f ui/dist/index.html ] || [ "$profile" = release ]; then
  [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
  npm run build:ui --silent
fi
# The portal package ships the admin page, served from /usr/share/ember-portal/admin.
if wanted ember-portal && { [ ! -f admin-ui/dist/index.html ] || [ "$profile" = release ]; }; then
  [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
  npm run build:admin --silent
fi

# The gateway binary is being written; it is packaged as soon as the crate has it.
gateway=no
[ -f crates/gateway/src/main.rs ] && gateway=yes

# One cargo invocation per set that scripts/test.sh builds the same way, so features unify as
# they do there and a warm cache builds nothing.
profile_args=()
[ "$profile" = release ] && profile_args=(--release)
if wanted ember; then
  cargo build --locked "${profile_args[@]}" -p ember-app -p ember-tunnel-service
fi
wanted ember-portal && cargo build --locked "${profile_args[@]}" -p ember-portal
if wanted ember-gateway; then
  if [ $gateway = yes ]; then
    cargo build --locked "${profile_args[@]}" -p ember-gateway
  else
    echo "package.sh: crates/gateway has no binary yet (src/main.rs); skipping ember-gateway" >&2
  fi
fi

# Manual pages: the CLI's own --help (help2man), the app's written by hand.
bin_dir="$CARGO_TARGET_DIR/$([ "$profile" = release ] && echo release || echo debug)"
gzip -9nc installer/debian/ember/ember.1 >installer/debian/build/ember.1.gz
manpage() { # binary, one-line description
  [ -x "$bin_dir/$1" ] || return 0
  help2man --no-info --no-discard-stderr --version-string="$version" --name="$2" "$bin_dir/$1" |
    gzip -9n >"installer/debian/build/$1.1.gz"
}
manpage ember-tunnel "Ember's tunnel service and its command-line client"
manpage ember-portal "Ember's self-hostable control plane"
manpage ember-gateway "Ember's gateway, the far end of the tunnels in your network"

mkdir -p "$out"
deb_args=(--no-build --locked --strip --deb-version "$deb_version" --output "$out")
if [ "$profile" = dev ]; then
  # xz at its default level takes minutes on these binaries; the CI packages are thrown away.
  deb_args+=(--profile dev --fast)
fi
built=()
package() { # cargo package, Debian package
  wanted "$2" || return 0
  local path
  path=$("$TOOLS/bin/cargo-deb" -p "$1" "${deb_args[@]}" 2> >(grep -v "dev profile is not supported\|cargo-deb is for making releases\|To enable debug symbols\|Cargo also supports custom profiles" >&2))
  built+=("$path")
}
package ember-app ember
package ember-portal ember-portal
[ $gateway = yes ] && package ember-gateway ember-gateway
printf '%s\n' "${built[@]}"
