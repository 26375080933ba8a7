#!/usr/bin/env python3
"""Draws the macOS tray icons (src-tauri/icons/tray-*-template.png).

macOS shows a menu-bar icon as a template: only its alpha counts, tinted for light and dark
menu bars. So the states cannot differ by colour as on Linux and Windows; they differ by
shape: a filled drop (signed in), an outline (signed out), half filled (connecting), filled
with a hole (degraded), an outline struck through (service unreachable). Black, alpha only.

Standard library only; run it again after changing a shape: scripts/tray-template-icons.py
"""
import math
import os
import struct
import zlib

SIZE = 32
SAMPLES = 4  # per axis, for anti-aliased edges
TIP = (16.0, 2.5)
CENTER = (16.0, 19.5)
RADIUS = 10.0
STROKE = 2.6

# Where the sides of the drop touch its round bottom.
_d = CENTER[1] - TIP[1]
_theta = math.acos(RADIUS / _d)
LEFT = (CENTER[0] - RADIUS * math.sin(_theta), CENTER[1] - RADIUS * math.cos(_theta))
RIGHT = (CENTER[0] + RADIUS * math.sin(_theta), CENTER[1] - RADIUS * math.cos(_theta))


def segment_distance(p, a, b):
    ax, ay = p[0] - a[0], p[1] - a[1]
    bx, by = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, (ax * bx + ay * by) / (bx * bx + by * by)))
    return math.hypot(ax - t * bx, ay - t * by)


def inside_drop(p):
    if math.hypot(p[0] - CENTER[0], p[1] - CENTER[1]) <= RADIUS:
        return True
    if not TIP[1] <= p[1] <= LEFT[1]:
        return False
    half = (p[1] - TIP[1]) / (LEFT[1] - TIP[1]) * (RIGHT[0] - CENTER[0])
    return abs(p[0] - CENTER[0]) <= half


def drop_distance(p):
    """Signed distance to the drop's outline: negative inside."""
    to_center = math.hypot(p[0] - CENTER[0], p[1] - CENTER[1])
    # The arc is the part of the circle below the touching points.
    arc = abs(to_center - RADIUS) if p[1] >= LEFT[1] else math.inf
    edge = min(arc, segment_distance(p, TIP, LEFT), segment_distance(p, TIP, RIGHT))
    return -edge if inside_drop(p) else edge


def filled(p):
    return drop_distance(p) <= 0


def outline(p):
    return -STROKE <= drop_distance(p) <= 0


def connecting(p):
    return outline(p) or (filled(p) and p[1] >= CENTER[1])


def degraded(p):
    return filled(p) and math.hypot(p[0] - CENTER[0], p[1] - (CENTER[1] + 1)) > 3.6


def unreachable(p):
    start, end = (5.0, 3.0), (27.0, 29.0)
    line = segment_distance(p, start, end)
    return line <= STROKE / 2 or (outline(p) and line > STROKE * 1.6)


SHAPES = {
    "signed-in": filled,
    "signed-out": outline,
    "connecting": connecting,
    "degraded": degraded,
    "unreachable": unreachable,
}


def render(shape):
    rows = []
    for y in range(SIZE):
        row = bytearray([0])  # filter: none
        for x in range(SIZE):
            hits = sum(
                shape(((x + (i + 0.5) / SAMPLES), (y + (j + 0.5) / SAMPLES)))
                for i in range(SAMPLES)
                for j in range(SAMPLES)
            )
            row += bytes([0, 0, 0, round(255 * hits / SAMPLES**2)])
        rows.append(bytes(row))
    return b"".join(rows)


def png(pixels):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels, 9))
        + chunk(b"IEND", b"")
    )


def main():
    icons = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src-tauri", "icons")
    for name, shape in SHAPES.items():
        path = os.path.join(icons, f"tray-{name}-template.png")
        with open(path, "wb") as out:
            out.write(png(render(shape)))
        print(path)


if __name__ == "__main__":
    main()
