#!/usr/bin/env python3
"""Checks the operator's kit in ops/ against the metrics the server has.

Usage: tools/check-ops.py SCRAPE DASHBOARD.json RULES.yml

- The Grafana dashboard is a dashboard: panels with a title, a place on
  the grid that overlaps no other, and queries with unique refIds.
- Every metric the dashboard or the alert rules query is one the server
  defines (a "livemap_..." name in server/src), and every one of those
  that a demo server exposes is in SCRAPE (a real /metrics of one), with
  the labels the queries group by. Families only aggregators and edges
  expose, or that have no series yet, are checked against the code alone.

promtool checks the rules themselves (syntax, and their unit tests).
"""

import json
import pathlib
import re
import sys

NAME = re.compile(r"\blivemap_[a-z0-9_]+")
BY = re.compile(r"\bby\s*\(([^)]*)\)")


def defined_in_code(root):
    names = set()
    for path in (root / "server" / "src").rglob("*.rs"):
        names.update(m.group(0).strip('"') for m in re.finditer(r'"livemap_[a-z0-9_]+"', path.read_text()))
    return names


def scraped(path):
    """The labels each family's series carry in a scrape."""
    labels = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            name = name.split()[0]
            keys = set(re.findall(r'([a-z_]+)="', rest.split("}")[0])) if rest else set()
            labels.setdefault(name, set()).update(keys)
    return labels


def queries(dashboard, rules_text):
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            out.append((f'panel "{panel["title"]}"', t["expr"]))
    for m in re.finditer(r"^\s*expr:\s*(>\s*\n(?:\s{10,}.*\n)+|.*)$", rules_text, re.M):
        out.append(("alert rules", m.group(1)))
    return out


def main():
    scrape, dashboard_path, rules_path = sys.argv[1:4]
    root = pathlib.Path(__file__).resolve().parent.parent
    dashboard = json.loads(pathlib.Path(dashboard_path).read_text())
    rules_text = pathlib.Path(rules_path).read_text()
    problems = []

    cells = set()
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    if not panels:
        problems.append("the dashboard has no panels")
    for p in dashboard["panels"]:
        g = p.get("gridPos") or {}
        if not p.get("title") or not all(k in g for k in "hwxy"):
            problems.append(f"panel {p.get('id')}: a title and a gridPos are needed")
            continue
        if g["x"] + g["w"] > 24:
            problems.append(f'panel "{p["title"]}" is wider than the grid')
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f'panel "{p["title"]}" overlaps another')
                    break
                cells.add((x, y))
        if p.get("type") != "row":
            refs = [t.get("refId") for t in p.get("targets", [])]
            if not refs or len(set(refs)) != len(refs) or not all(t.get("expr") for t in p["targets"]):
                problems.append(f'panel "{p["title"]}": queries need an expr and unique refIds')

    code = defined_in_code(root)
    labels = scraped(scrape)
    used = 0
    for where, expr in queries(dashboard, rules_text):
        for name in set(NAME.findall(expr)):
            used += 1
            if name not in code:
                problems.append(f"{where}: {name} is not a metric the server defines")
            elif name in labels:
                # Labels are known only for families with series now (a
                # family can be declared before its first series).
                grouped = {k.strip() for b in BY.findall(expr) for k in b.split(",") if k.strip()}
                missing = grouped - labels.get(name, set()) - {"job", "instance"}
                if missing and NAME.findall(expr) == [name]:
                    problems.append(f"{where}: {name} has no label {sorted(missing)}")
    if used == 0:
        problems.append("no metric queried at all")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{len(panels)} panels and the alert rules query {used} metrics, all defined", file=sys.stderr)


if __name__ == "__main__":
    main()
