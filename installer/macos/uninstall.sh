#!/bin/sh
# Removes Ember from this Mac: the tunnel service, the app and the package receipt.
#   sudo /Applications/Ember.app/Contents/Resources/uninstall.sh           keep settings and logs
#   sudo /Applications/Ember.app/Contents/Resources/uninstall.sh --purge   also settings, logs, group
set -eu
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run it with sudo" >&2; exit 1; }
LABEL=dev.ember.tunnel
launchctl bootout "system/$LABEL" 2>/dev/null || true
rm -f "/Library/LaunchDaemons/$LABEL.plist"
rm -rf /Applications/Ember.app
pkgutil --forget dev.ember.pkg >/dev/null 2>&1 || true
if [ "${1:-}" = --purge ]; then
    rm -rf "/Library/Application Support/dev.ember.tunnel" /Library/Logs/Ember /var/run/ember
    dseditgroup -o delete ember 2>/dev/null || true
fi
echo "Ember removed."
