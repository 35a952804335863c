#!/usr/bin/env python3
"""Fails when the modules of a crate depend on each other in a circle.

    scripts/module-cycles.py crates/strata-coordinator/src [--edges]

A module is a top-level file or directory under SRC; it depends on another when its code
(comments and test modules left out) names `crate::OTHER`. Prints each circle (a strongly
connected set of modules) and exits 1 if there is one; `--edges` prints every module's
dependencies too.
"""
import os
import re
import sys


def code_of(text):
    """The text without comments and without `#[cfg(test)]` modules at the end."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod \w+ \{", text, re.M)
    if cut:
        text = text[: cut.start()]
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))


def modules(src):
    deps = {}
    for dirpath, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs") or name.endswith("tests.rs"):
                continue
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            top = parts[0]
            if top in ("lib", "main"):
                continue
            found = deps.setdefault(top, set())
            with open(path) as f:
                for m in re.finditer(r"crate::([a-z_0-9]+)", code_of(f.read())):
                    if m.group(1) != top:
                        found.add(m.group(1))
    return {k: {d for d in v if d in deps} for k, v in deps.items()}


def circles(deps):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def main():
    src = sys.argv[1]
    deps = modules(src)
    if "--edges" in sys.argv:
        for k in sorted(deps):
            print(f"{k} -> {' '.join(sorted(deps[k]))}")
    found = circles(deps)
    for comp in found:
        inner = [f"{a} -> {b}" for a in comp for b in sorted(deps[a]) if b in comp]
        print(f"circle of {len(comp)} modules in {src}: {', '.join(inner)}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
