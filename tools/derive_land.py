#!/usr/bin/env python3
"""Derive the globe's land dots and coastlines from Natural Earth (via world-atlas).

Run (stdlib only, no numpy/PIL needed):
    cd "$(mktemp -d)" && npm init -y && npm i world-atlas@2.0.2
    python3 /path/to/repo/tools/derive_land.py "$PWD/node_modules/world-atlas" [--preview /tmp/land-dots.png]

Writes wasm-viz/data/land-mask.bin and wasm-viz/data/coastlines.bin (formats in
wasm-viz/data/README.md). The downloaded TopoJSON is never copied into the repo.

Why the point-in-polygon test is spherical-ish: world-atlas polygons are "stitched",
i.e. they are NOT cut at the antimeridian or the poles. Russia's and Fiji's rings jump
from lon +179.9 to -180, and Antarctica is a ring *around* the south pole that never
reaches lat -90. A planar lon/lat even-odd test gets both wrong, so instead we cast a
ray from each point due north to the pole along its meridian and count crossings,
taking every edge the short way round in longitude. No land polygon contains the
north pole, so odd crossings == inside; that also makes Antarctica (which encloses the
south pole) and holes (Caspian Sea) come out right.
"""
import json, math, struct, sys, zlib
from pathlib import Path

LATTICE_N = 90_000  # total Fibonacci points; ~29% are land -> ~26k dots (a 11 KB mask)
BIN_W = 0.25        # longitude bucket width (deg) for the edge index; only speed
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "wasm-viz" / "data"


def load_polygons(path):
    """Decode a TopoJSON 'land' object into [polygon][ring][(lon, lat)]."""
    t = json.loads(Path(path).read_text())
    (sx, sy), (tx, ty) = t["transform"]["scale"], t["transform"]["translate"]
    arcs = []
    for arc in t["arcs"]:  # quantized + delta-encoded positions
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)

    def ring(idxs):  # ~i means arc i reversed; consecutive arcs share an endpoint
        out = []
        for i in idxs:
            pts = arcs[i] if i >= 0 else arcs[~i][::-1]
            out.extend(pts if not out else pts[1:])
        return out

    polys = []
    for g in t["objects"]["land"]["geometries"]:
        parts = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
        polys += [[ring(r) for r in p] for p in parts]
    return polys


def fibonacci_lattice(n):
    """Near-uniform points on the sphere: equal-area latitude steps, golden-angle lon."""
    golden = (1 + 5 ** 0.5) / 2
    for i in range(n):
        lat = math.degrees(math.asin(1 - (2 * i + 1) / n))
        lon = (i * 360 / golden) % 360 - 180
        yield lat, lon


def build_edge_index(polys):
    """Bucket every edge by the longitude bins it spans (after short-way unwrapping)."""
    nbins = round(360 / BIN_W)
    bins = [[] for _ in range(nbins)]
    for pid, poly in enumerate(polys):
        for ring in poly:
            for (x0, y0), (x1, y1) in zip(ring, ring[1:]):
                if x1 - x0 > 180: x1 -= 360   # cross the antimeridian the short way
                elif x0 - x1 > 180: x1 += 360
                if x0 == x1:
                    continue  # meridian-parallel edges never cross a meridian ray
                k0 = math.floor((min(x0, x1) + 180) / BIN_W)
                k1 = math.floor((max(x0, x1) + 180) / BIN_W)
                for k in range(k0, k1 + 1):
                    # edge copy shifted by 360 so it lives in the bin's [-180,180) frame
                    s = -360 * (k // nbins)
                    bins[k % nbins].append((pid, x0 + s, y0, x1 + s, y1))
    return bins


def is_land(lat, lon, bins):
    odd = set()  # polygon ids with an odd number of crossings so far
    for pid, x0, y0, x1, y1 in bins[int((lon + 180) / BIN_W) % len(bins)]:
        if (x0 <= lon) != (x1 <= lon):  # half-open, so shared vertices count once
            if y0 + (lon - x0) / (x1 - x0) * (y1 - y0) > lat:
                odd ^= {pid}
    return bool(odd)


def split_seams(ring):
    """Closed ring -> line strips, cut at zero-width edges along lon +-180."""
    pts = ring[:-1]
    n = len(pts)
    seam = lambda i: abs(pts[i][0]) == 180 and pts[i][0] == pts[(i + 1) % n][0]
    cuts = [i for i in range(n) if seam(i)]
    if not cuts:
        return [ring]
    out, cur = [], []
    for j in range(n):  # start just after a seam edge so no piece wraps round
        i = (cuts[0] + 1 + j) % n
        cur.append(pts[i])
        if seam(i):
            out.append(cur)
            cur = []
    return out


def centi(v):
    return int(round(v * 100))


def write_preview(png_path, dots, rings, w=1440, h=720):
    """Equirectangular RGB PNG (hand-rolled; no PIL): dots white, coastlines red."""
    px = bytearray(b"\x10\x18\x30" * (w * h))
    def put(lat, lon, rgb):
        x = min(w - 1, int((lon + 180) / 360 * w)); y = min(h - 1, int((90 - lat) / 180 * h))
        px[(y * w + x) * 3:(y * w + x) * 3 + 3] = rgb
    for lat, lon in dots: put(lat, lon, b"\xff\xff\xff")
    for r in rings:
        for lat, lon in r: put(lat, lon, b"\xff\x30\x30")
    raw = b"".join(b"\x00" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    Path(png_path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                               + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    atlas = Path(args[0])
    version = json.loads((atlas / "package.json").read_text())["version"]
    if version != "2.0.2":
        sys.exit(f"expected world-atlas 2.0.2, found {version}")
    OUT.mkdir(parents=True, exist_ok=True)

    # (a) land dots: Fibonacci lattice points inside the 50m land polygons.
    bins = build_edge_index(load_polygons(atlas / "land-50m.json"))
    bits = bytearray((LATTICE_N + 7) // 8)
    for i, (la, lo) in enumerate(fibonacci_lattice(LATTICE_N)):
        if is_land(la, lo, bins):
            bits[i >> 3] |= 1 << (i & 7)
    blob = b"LMSK" + struct.pack("<I", LATTICE_N) + bytes(bits)
    (OUT / "land-mask.bin").write_bytes(blob)
    dots = [(la, lo) for i, (la, lo) in enumerate(fibonacci_lattice(LATTICE_N)) if bits[i >> 3] >> (i & 7) & 1]
    print(f"land-mask.bin: {len(dots)} of {LATTICE_N} lattice points are land, {len(blob)} bytes")

    # (b) coastlines: 110m rings as line strips (rings are closed: last point == first).
    # Stitching leaves a few zero-width "seam" edges along lon ±180 where an island was
    # cut (e.g. Wrangel Island); drawn on a globe they are fake coast, so split there.
    lines = [l for poly in load_polygons(atlas / "land-110m.json") for r in poly for l in split_seams(r)]
    lines = [[(centi(la), centi(lo)) for lo, la in l] for l in lines if len(l) >= 4]
    blob = b"LCST" + struct.pack("<I", len(lines)) + b"".join(
        struct.pack("<I", len(l)) + b"".join(struct.pack("<hh", *p) for p in l) for l in lines)
    (OUT / "coastlines.bin").write_bytes(blob)
    print(f"coastlines.bin: {len(lines)} rings, {sum(map(len, lines))} points, {len(blob)} bytes")

    if "--preview" in args:
        png = args[args.index("--preview") + 1]
        write_preview(png, dots,
                      [[(a / 100, b / 100) for a, b in l] for l in lines])
        print(f"preview: {png}")


if __name__ == "__main__":
    main()
