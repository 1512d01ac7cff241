#!/usr/bin/env python3
"""Lists import cycles between the modules of each Rust crate in the workspace (one module per
file). An edge A -> B means a file of module A names an item of module B (`crate::b::…`,
`super::…`, `self::b::…`), a parent naming its child included. Exit 1 when a cycle exists.

    python3 scripts/import_cycles.py            # from the repository root
"""
import os
import re
import sys

CRATES = {"collector": "collector/src", "query-mcp": "query-mcp/src", "proto": "proto/src",
          "store": "store/src", "context": "context/src"}


def modules(root):
    """File path -> module path (tuple), for every .rs file under root (bins are their own
    crates: skipped)."""
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "bin"]
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(d, f), root)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            out[os.path.join(d, f)] = tuple(rel)
    return out


def code(path):
    text = open(path).read()
    text = re.sub(r"//[^\n]*", "", text)
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def resolve(mod, path, known):
    """The longest known module a path names, from module `mod`."""
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] == "super":
        base, rest = mod, parts
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif parts[0] == "self":
        base, rest = mod, parts[1:]
    else:
        base, rest = mod, parts  # a child named directly (`child::f`)
        if not rest or base + (rest[0],) not in known:
            return None
    best = base if base in known else None
    for i in range(len(rest)):
        cand = base + tuple(rest[: i + 1])
        if cand in known:
            best = cand
    return best


def graph(root):
    mods = modules(root)
    known = set(mods.values())
    edges = {m: set() for m in known}
    for path, mod in mods.items():
        for m in re.finditer(r"\b((?:crate|super|self|[a-z_][a-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*)+)", code(path)):
            target = resolve(mod, m.group(1), known)
            if target is not None and target != mod:
                edges[mod].add(target)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    found = False
    for crate, root in CRATES.items():
        if not os.path.isdir(root):
            continue
        for comp in cycles(graph(root)):
            found = True
            names = sorted("::".join(m) or "(root)" for m in comp)
            print(f"{crate}: cycle among {', '.join(names)}")
    if not found:
        print("no import cycles")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
