#!/bin/sh
# Removes Ember from this Mac: the tunnel service, the app and the package receipt.
#   sudo /Applications/Ember.app/Contents/Resources/uninstall.sh           keep settings and logs
#   sudo /Applications/Ember.app/Contents/Resources/uninstall.sh --purge   also settings, logs, group
set -eu
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run it with sudo" >&2; exit 1; }
LABEL=dev.ember.tunnel
launchctl bootout "system/$LABEL" 2>/dev/null || true
# The service removes its resolver files when it stops and at its next start; after a crash
# with no next start, these are the files whose first line is its mark, and no others.
MARK="# Written by Ember's tunnel service (dev.ember.tunnel); removed when it stops."
for file in /etc/resolver/* /etc/resolver/.*.ember-new; do
    if [ -f "$file" ] && [ ! -L "$file" ] && [ "$(head -n 1 "$file")" = "$MARK" ]; then
        rm -f "$file"
    fi
done
rm -f "/Library/LaunchDaemons/$LABEL.plist"
rm -rf /Applications/Ember.app
pkgutil --forget dev.ember.pkg >/dev/null 2>&1 || true
if [ "${1:-}" = --purge ]; then
    rm -rf "/Library/Application Support/dev.ember.tunnel" /Library/Logs/Ember /var/run/ember
    dseditgroup -o delete ember 2>/dev/null || true
fi
echo "Ember removed."
