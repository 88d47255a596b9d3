#!/usr/bin/env python3
"""Writes hostile checkout events as JSON lines, for bench/hostile-input.sh.

    poison.py fast-clock AHEAD_SECONDS   one order from a producer whose clock runs ahead
    poison.py long-category COUNT BYTES  COUNT orders, each with its own category of BYTES
    poison.py huge-total                 one order of 184,467,440,737,095,516.15 USD
"""
import datetime
import json
import sys
import time
import uuid


def checkout(occurred_ms, total="42.00", category="Apparel & Accessories > Shoes"):
    at = datetime.datetime.fromtimestamp(occurred_ms / 1000, datetime.timezone.utc)
    return {
        "event_id": str(uuid.uuid4()),
        "type": "checkout.completed",
        "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "shop": {"id": 1048576, "country": "CA", "lat": 43.6532, "lon": -79.3832},
        "buyer": {"id": uuid.uuid4().hex, "country": "US", "city": "Austin",
                  "lat": 30.2672, "lon": -97.7431},
        "order": {"id": uuid.uuid4().hex, "total": total, "currency": "USD",
                  "channel": "online_store",
                  "line_items": [{"product_category": category, "quantity": 1, "price": total}]},
    }


def main():
    now = int(time.time() * 1000)
    kind = sys.argv[1]
    if kind == "fast-clock":
        events = [checkout(now + int(sys.argv[2]) * 1000)]
    elif kind == "long-category":
        count, size = int(sys.argv[2]), int(sys.argv[3])
        events = [checkout(now, category=f"{i:06d}" + "x" * size) for i in range(count)]
    elif kind == "huge-total":
        events = [checkout(now, total="184467440737095516.15")]
    else:
        sys.exit(__doc__)
    for e in events:
        print(json.dumps(e, separators=(",", ":")))


main()
