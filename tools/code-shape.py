#!/usr/bin/env python3
"""The shape of a Rust crate's source, for issue reviews:

    tools/code-shape.py server/src [engine/src ...]

prints the largest modules (lines), the longest functions (lines from
`fn` to its closing brace), and the modules that import each other in
cycles (strongly connected components of the `crate::a::b` references
between files). A file is a module; `mod.rs` is its folder's module.
"""
import os
import re
import sys


def modules(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)[:-3]
                parts = rel.split(os.sep)
                if parts[-1] in ("mod", "lib"):
                    parts = parts[:-1]
                yield "::".join(parts) or "crate", path


def strip_tests(text):
    """The code without its tests, comments, strings and characters: tests
    may import anything, comments may name any module, and strings may
    hold braces."""
    i = text.find("#[cfg(test)]")
    text = text if i < 0 else text[:i]
    out, k, n = [], 0, len(text)
    while k < n:
        c = text[k]
        if text.startswith("//", k):
            k = text.find("\n", k)
            k = n if k < 0 else k
        elif text.startswith("/*", k):
            k = text.find("*/", k)
            k = n if k < 0 else k + 2
        elif c == "r" and re.match(r'r#*"', text[k:]) and not (k and (text[k - 1].isalnum() or text[k - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[k:]).group(1)
            end = text.find('"' + hashes, k + len(hashes) + 2)
            out.append('""')
            k = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            k += 1
            while k < n and text[k] != '"':
                k += 2 if text[k] == "\\" else 1
            out.append('""')
            k += 1
        elif c == "'" and re.match(r"'(\\.|[^'\\])'", text[k:k + 4]):
            m = re.match(r"'(\\.|[^'\\])'", text[k:k + 4])
            out.append("' '")
            k += m.end()
        else:
            out.append(c)
            k += 1
    return "".join(out)


def functions(text):
    for m in re.finditer(r"\bfn\s+(\w+)[^;{]*\{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), text.count("\n", m.start(), i) + 1


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    sizes, funcs, graph = [], [], {}
    for root in sys.argv[1:]:
        mods = dict(modules(root))
        crate = os.path.basename(os.path.dirname(os.path.abspath(root)))
        for name, path in mods.items():
            text = open(path, encoding="utf-8").read()
            code = strip_tests(text)
            sizes.append((text.count("\n"), f"{crate}/{name}"))
            funcs += [(n, f"{crate}/{name}::{f}") for f, n in functions(code)]
            deps = set()
            for ref in re.findall(r"\b(?:crate|super)::((?:\w+::)*\w+)", code):
                parts = ref.split("::")
                # The longest module path the reference names.
                for k in range(len(parts), 0, -1):
                    cand = "::".join(parts[:k])
                    if cand in mods and cand != name:
                        deps.add(f"{crate}/{cand}")
                        break
            # `use crate::{a, b::c}` groups.
            for group in re.findall(r"use\s+crate::\{([^}]*)\}", code):
                for item in group.split(","):
                    head = item.strip().split("::")[0]
                    if head in mods and head != name:
                        deps.add(f"{crate}/{head}")
            graph[f"{crate}/{name}"] = deps
    print("largest modules (lines):")
    for n, m in sorted(sizes, reverse=True)[:5]:
        print(f"  {n:6} {m}")
    print("longest functions (lines):")
    for n, f in sorted(funcs, reverse=True)[:5]:
        print(f"  {n:6} {f}")
    cyclic = [sorted(c) for c in sccs(graph) if len(c) > 1]
    print(f"modules in import cycles: {sum(len(c) for c in cyclic)}")
    for c in cyclic:
        print("  " + ", ".join(c))


main()
