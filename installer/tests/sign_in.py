#!/usr/bin/env python3
"""Signs the installed tunnel service in, as the tray app would, for scripts/test-packages.sh.

Usage: sign_in.py PORTAL_URL SOCKET ACCOUNT EMAIL PASSWORD

1. The browser's part: opens the portal's sign-in page with a fresh state and nonce, posts
   the password form (with its CSRF cookie) and reads the ember:// redirect.
2. The app's part: derives the token (HMAC-SHA256 keyed with the nonce over the fragment),
   then sends it to the service over its socket (4-byte big-endian length + JSON) and prints
   the service's answer. Exits 0 when the service accepted the token.
"""

import hashlib
import hmac
import http.cookiejar
import json
import re
import secrets
import socket
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request

PROTOCOL_VERSION = 1


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser_sign_in(portal, account, email, password):
    state, nonce = secrets.token_hex(32), secrets.token_hex(32)
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect
    )
    query = urllib.parse.urlencode({"as": "client", "state": state, "nonce": nonce, "account": account})
    html = opener.open(f"{portal}/sign-in?{query}", timeout=10).read().decode()

    def hidden(name):
        match = re.search(f'name="{name}" value="([^"]*)"', html)
        if not match:
            sys.exit(f"sign_in.py: no field {name} on the sign-in page")
        return match.group(1).replace("&amp;", "&")

    form = urllib.parse.urlencode(
        {"attempt": hidden("attempt"), "csrf": hidden("csrf"), "account": account,
         "email": email, "password": password}
    ).encode()
    try:
        opener.open(f"{portal}/sign-in", form, timeout=30)
        sys.exit("sign_in.py: the portal did not redirect to ember://")
    except urllib.error.HTTPError as redirect:
        location = redirect.headers.get("Location", "")
    link = urllib.parse.urlparse(location)
    params = urllib.parse.parse_qs(link.query)
    if link.scheme != "ember" or params.get("state") != [state]:
        sys.exit(f"sign_in.py: unexpected redirect {location!r}")
    fragment = params["fragment"][0]
    return hmac.new(bytes.fromhex(nonce), bytes.fromhex(fragment), hashlib.sha256).hexdigest()


def service_sign_in(path, token):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(30)
    conn.connect(path)

    def send(message):
        body = json.dumps(message).encode()
        conn.sendall(struct.pack(">I", len(body)) + body)

    def read(n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                sys.exit("sign_in.py: the service closed the connection")
            data += chunk
        return data

    def recv():
        (length,) = struct.unpack(">I", read(4))
        return json.loads(read(length))

    send({"type": "hello", "protocol_version": PROTOCOL_VERSION, "client_version": "package-test"})
    send({"type": "request", "id": 1, "request": {"kind": "sign_in", "token": token}})
    while True:
        message = recv()
        if message.get("type") in ("refused", "incompatible", "protocol_error"):
            sys.exit(f"sign_in.py: {message}")
        if message.get("type") == "response" and message.get("id") == 1:
            print(json.dumps(message["result"]))
            return "Ok" in message["result"]


def main():
    portal, path, account, email, password = sys.argv[1:6]
    token = browser_sign_in(portal, account, email, password)
    sys.exit(0 if service_sign_in(path, token) else 1)


if __name__ == "__main__":
    main()
