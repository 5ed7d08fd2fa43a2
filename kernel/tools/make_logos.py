"""Draws the kernelspec logos (share/jupyter/kernels/splitbrain/logo-*.png) with the stdlib only.

A disc split down the middle: the master's half and the slave's half, a gap between them.
Run: .venv/bin/python kernel/tools/make_logos.py (the PNGs are committed).
"""
import pathlib
import struct
import zlib

MASTER = (0x30, 0x69, 0x98)  # Python blue
SLAVE = (0xFF, 0xB7, 0x1B)   # Python yellow


def pixel(x, y, size):
    # 4x4 supersampling for smooth edges.
    hits = {MASTER: 0, SLAVE: 0}
    for sy in range(4):
        for sx in range(4):
            px = (x + (sx + 0.5) / 4) / size - 0.5
            py = (y + (sy + 0.5) / 4) / size - 0.5
            if px * px + py * py > 0.46 ** 2 or abs(px) < 0.035:
                continue
            hits[MASTER if px < 0 else SLAVE] += 1
    colour = max(hits, key=hits.get)
    return (*colour, round(255 * hits[colour] / 16))


def png(size):
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y, size)) for x in range(size)) for y in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


if __name__ == "__main__":
    spec = pathlib.Path(__file__).resolve().parents[2] / "share/jupyter/kernels/splitbrain"
    for size in (32, 64):
        (spec / f"logo-{size}x{size}.png").write_bytes(png(size))
