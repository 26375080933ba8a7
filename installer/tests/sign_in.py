#!/usr/bin/env python3
"""Signs the installed tunnel service in, as the tray app would, for scripts/test-packages.sh.

Usage: sign_in.py PORTAL_URL SOCKET ACCOUNT EMAIL PASSWORD

1. The browser's part: opens the portal's sign-in page with a fresh state and the challenge of
   a PKCE verifier (SHA-256, base64url), posts the password form (with its CSRF cookie) and
   reads the ember:// redirect with its one-time code.
2. The app's part: sends code and verifier to the service over its socket (4-byte big-endian
   length + JSON); the service redeems them with the portal. Prints the service's answer and
   exits 0 when the service signed in.
"""

import base64
import hashlib
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

PROTOCOL_VERSION = 2


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser_sign_in(portal, account, email, password):
    state = secrets.token_hex(32)
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect
    )
    query = urllib.parse.urlencode({"as": "client", "state": state, "challenge": challenge, "account": account})
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
    except urllib.error.HTTPError as answer:
        location = answer.headers.get("Location", "")
        status, page = answer.code, answer.read().decode(errors="replace")
    link = urllib.parse.urlparse(location)
    params = urllib.parse.parse_qs(link.query)
    if link.scheme != "ember" or params.get("state") != [state]:
        # The page's own words say why (wrong password, unknown account, too many attempts).
        said = re.findall(r'<p[^>]*>([^<]*)</p>', page)
        sys.exit(f"sign_in.py: the portal answered {status} without the ember:// redirect "
                 f"(Location {location!r}): {' / '.join(said) or page[:300]!r}")
    return params["code"][0], verifier


def service_sign_in(path, portal, code, verifier):
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
    send({"type": "request", "id": 1,
          "request": {"kind": "sign_in", "portal_url": portal, "code": code, "verifier": verifier}})
    while True:
        message = recv()
        if message.get("type") in ("refused", "incompatible", "protocol_error"):
            sys.exit(f"sign_in.py: {message}")
        if message.get("type") == "response" and message.get("id") == 1:
            result = message["result"]
            # The token the service answers is the user's credential: not for the test log.
            if "Ok" in result:
                print(json.dumps({"Ok": {"kind": result["Ok"].get("kind")}}))
            else:
                print(json.dumps(result))
            return "Ok" in result


def main():
    portal, path, account, email, password = sys.argv[1:6]
    code, verifier = browser_sign_in(portal, account, email, password)
    sys.exit(0 if service_sign_in(path, portal, code, verifier) else 1)


if __name__ == "__main__":
    main()
