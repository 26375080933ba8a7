#!/bin/sh
# Builds Ember's macOS installer on a Mac (installer/macos/README.md):
#   installer/macos/build-pkg.sh [--universal] [--sign "Developer ID Application: …"] \
#       [--installer-sign "Developer ID Installer: …"] [--notarize KEYCHAIN_PROFILE]
# Output: artifacts/macos/Ember-<version>.pkg
set -eu
cd "$(dirname "$0")/../.."
universal=no; app_identity=-; pkg_identity=""; notary_profile=""
while [ $# -gt 0 ]; do
    case "$1" in
        --universal) universal=yes ;;
        --sign) app_identity=$2; shift ;;
        --installer-sign) pkg_identity=$2; shift ;;
        --notarize) notary_profile=$2; shift ;;
        *) echo "build-pkg.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
out=artifacts/macos
stage=$out/root
target=${CARGO_TARGET_DIR:-target}
rm -rf "$stage" && mkdir -p "$stage/Applications"

# 1. The app bundle (the Tauri CLI builds the UI first), and the service.
npm ci --no-audit --no-fund
if [ $universal = yes ]; then
    rustup target add aarch64-apple-darwin x86_64-apple-darwin
    npm run tauri -- build --bundles app --target universal-apple-darwin --config '{"bundle":{"active":true}}'
    cargo build --release --locked -p ember-tunnel-service --target aarch64-apple-darwin
    cargo build --release --locked -p ember-tunnel-service --target x86_64-apple-darwin
    app=$target/universal-apple-darwin/release/bundle/macos/Ember.app
    lipo -create -output "$out/ember-tunnel" \
        "$target/aarch64-apple-darwin/release/ember-tunnel" "$target/x86_64-apple-darwin/release/ember-tunnel"
else
    npm run tauri -- build --bundles app --config '{"bundle":{"active":true}}'
    cargo build --release --locked -p ember-tunnel-service
    app=$target/release/bundle/macos/Ember.app
    cp "$target/release/ember-tunnel" "$out/ember-tunnel"
fi
cp -R "$app" "$stage/Applications/Ember.app"

# 2. The service, its launchd definition and the uninstaller inside the bundle.
contents=$stage/Applications/Ember.app/Contents
install -m 0755 "$out/ember-tunnel" "$contents/MacOS/ember-tunnel"
install -m 0644 installer/macos/dev.ember.tunnel.plist "$contents/Resources/dev.ember.tunnel.plist"
install -m 0755 installer/macos/uninstall.sh "$contents/Resources/uninstall.sh"

# 3. Signing: the service first, then the bundle around it ("-" = ad hoc, for local tests;
#    a secure timestamp needs a real identity).
timestamp=--timestamp
[ "$app_identity" = - ] && timestamp=--timestamp=none
codesign --force --options runtime "$timestamp" -s "$app_identity" "$contents/MacOS/ember-tunnel"
codesign --force --options runtime "$timestamp" -s "$app_identity" "$stage/Applications/Ember.app"

# 4. The component package: fixed location (never "relocated" to another copy of the app).
pkgbuild --analyze --root "$stage" "$out/components.plist"
plutil -replace 0.BundleIsRelocatable -bool NO "$out/components.plist"
pkgbuild --root "$stage" --component-plist "$out/components.plist" \
    --scripts installer/macos/scripts --identifier dev.ember.pkg --version "$version" \
    --install-location / "$out/ember-component.pkg"

# 5. The product archive users double-click.
pkg=$out/Ember-$version.pkg
if [ -n "$pkg_identity" ]; then
    productbuild --distribution installer/macos/distribution.xml --package-path "$out" \
        --sign "$pkg_identity" "$pkg"
else
    productbuild --distribution installer/macos/distribution.xml --package-path "$out" "$pkg"
fi
if [ -n "$notary_profile" ]; then
    xcrun notarytool submit "$pkg" --keychain-profile "$notary_profile" --wait
    xcrun stapler staple "$pkg"
fi
echo "built $pkg"
