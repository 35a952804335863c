#!/usr/bin/env python3
"""Fails when the modules of a crate depend on each other in a circle.

    scripts/module-cycles.py crates/strata-coordinator/src [--edges]

At the top, a module is a top-level file or directory under SRC; it depends on another
when its code (comments and `#[cfg(test)]` modules left out, wherever they sit in the
file) names `crate::OTHER` or `crate::{OTHER, ...}`. Below, the same between the children
of every module directory (`listing/read.rs` and `listing/bounded.rs`, say): a child
depends on a sibling its code names through `super::` (`super::super::` from a file one
level further down, and so on) or through the sibling's whole `crate::` path, or names an
item the parent brings in from the sibling by `use` (`super::Name` where the parent says
`pub use sibling::Name`). At the top, the same through the crate root: a module naming
`crate::Repository` where `lib.rs` says `pub use repository::Repository` depends on
`repository`. Files named
`*tests.rs`, and files of modules declared under a test-only `cfg` (`#[cfg(test)] mod
model;`), are tests. Prints each circle (a strongly connected set of modules) and exits 1
if there is one; `--edges` prints every module's dependencies too.
"""
import os
import re
import sys


# An attribute that compiles what follows for tests only: `#[cfg(test)]`, or
# `#[cfg(all(test, ...))]` (test among what must all hold).
TEST_CFG = r"^[ \t]*#\[cfg\((?:test|all\((?:[^()]*,\s*)?test\b[^\n]*\))\)\]"


def test_only_files(src):
    """The files under SRC compiled for tests only: a module declared out of line under
    a test-only `cfg` (`#[cfg(test)] mod model;`: `model.rs` or `model/`, with every
    file under it), and files named `*tests.rs`."""
    out = set()
    for dirpath, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            if name.endswith("tests.rs"):
                out.add(path)
            with open(path) as f:
                text = f.read()
            # A file's child modules live beside it (lib.rs, main.rs, mod.rs) or in the
            # directory named after it.
            stem = name[:-3]
            base = dirpath if stem in ("lib", "main", "mod") else os.path.join(dirpath, stem)
            pattern = TEST_CFG + r"\s*\n(?:\s*#\[[^\n]*\]\s*\n)*\s*(?:pub(?:\([^)]*\))? )?mod (\w+)\s*;"
            for m in re.finditer(pattern, text, re.M):
                child = m.group(1)
                file = os.path.join(base, child + ".rs")
                if os.path.exists(file):
                    out.add(file)
                folder = os.path.join(base, child)
                for d, _, names in os.walk(folder):
                    out.update(os.path.join(d, n) for n in names if n.endswith(".rs"))
    return out


def strip_test_modules(text):
    """The text without its `#[cfg(test)]` modules (each to its closing brace), wherever
    they are: production code after a test module still counts."""
    out, at = [], 0
    for m in re.finditer(TEST_CFG + r"\s*\n(\s*#\[[^\n]*\]\s*\n)*\s*(pub(\([^)]*\))? )?mod \w+\s*\{", text, re.M):
        if m.start() < at:
            continue
        out.append(text[at : m.start()])
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == '"':
                # Skip a string literal (a brace inside it is not code).
                i += 1
                while i < len(text) and text[i] != '"':
                    i += 2 if text[i] == "\\" else 1
            elif text.startswith("//", i):
                i = text.find("\n", i)
                if i < 0:
                    i = len(text)
                continue
            i += 1
        at = i
    out.append(text[at:])
    return "".join(out)


def code_of(text):
    """The text without comments and without `#[cfg(test)]` modules."""
    text = strip_test_modules(text)
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))


def top_level_items(text):
    """The comma-separated items of a `use` group's inside, nested groups kept whole."""
    depth, item, items = 0, "", []
    for c in text:
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            items.append(item)
            item = ""
        else:
            item += c
    items.append(item)
    return [i.strip() for i in items if i.strip()]


def braced_groups(code, prefix):
    """The inside of each `PREFIX{...}` group of the code (nested braces matched)."""
    for group in re.finditer(prefix + r"\{", code):
        depth, i = 1, group.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        yield code[group.end() : i - 1]


def named_modules(code, prefix=r"crate::"):
    """The modules a file's code names after `prefix` (a regular expression): `crate::x`,
    and each `x` of `crate::{x, y::z}`."""
    names = set(re.findall(prefix + r"([a-z_0-9]+)", code))
    for inner in braced_groups(code, prefix):
        for item in top_level_items(inner):
            m = re.match(r"([a-z_0-9]+)", item)
            if m and m.group(1) != "self":
                names.add(m.group(1))
    return names


def reexports(code):
    """The names a module's code brings in from its children by `use` (`pub use
    child::Name;`, `use child::{A, b as c};`, `pub(crate) use self::child::x`): a name
    mapped to the child it comes from. A sibling naming `super::Name` depends on that
    child, as much as if it named it."""
    out = {}
    for m in re.finditer(r"(?<![\w:])use\s+(?:self::)?([a-z_0-9]+)::(.*?);", code, re.S):
        child, rest = m.group(1), m.group(2).strip()
        if rest.startswith("{"):
            rest = rest[1:].rsplit("}", 1)[0]
        for item in top_level_items(rest):
            if "{" in item or item.endswith("*"):
                continue
            alias = re.search(r"\bas\s+(\w+)$", item)
            name = alias.group(1) if alias else item.split("::")[-1].strip()
            if name not in ("self", "_"):
                out[name] = child
    return out


def named_through(code, prefix, names):
    """The children a file's code names through re-exports: each Name of `names` (from
    [`reexports`]) named as `PREFIX Name`, in `PREFIX {A, Name, ...}`, or as `alias::Name`
    after `PREFIX {self as alias, ...}`."""
    found = set(re.findall(prefix + r"([A-Za-z_][A-Za-z_0-9]*)", code))
    for inner in braced_groups(code, prefix):
        for item in top_level_items(inner):
            alias = re.fullmatch(r"self\s+as\s+(\w+)", item)
            if alias:
                found |= set(re.findall(r"(?<![\w:])" + alias.group(1) + r"::([A-Za-z_][A-Za-z_0-9]*)", code))
            elif re.match(r"[A-Za-z_]\w*", item):
                found.add(re.match(r"[A-Za-z_]\w*", item).group(0))
    return {names[n] for n in found if n in names}


def parent_code(dirpath):
    """The code of the module a directory holds the children of (`mod.rs` inside it, or
    the file of the same name beside it)."""
    for path in (os.path.join(dirpath, "mod.rs"), dirpath + ".rs"):
        if os.path.isfile(path):
            with open(path) as f:
                return code_of(f.read())
    return ""


def root_code(src):
    """The code of the crate root (`lib.rs`, else `main.rs`)."""
    for name in ("lib.rs", "main.rs"):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            with open(path) as f:
                return code_of(f.read())
    return ""


def modules(src):
    deps = {}
    tests = test_only_files(src)
    through = reexports(root_code(src))
    for dirpath, _, files in os.walk(src):
        for name in files:
            path = os.path.join(dirpath, name)
            if not name.endswith(".rs") or path in tests:
                continue
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            top = parts[0]
            if top in ("lib", "main"):
                continue
            found = deps.setdefault(top, set())
            with open(path) as f:
                code = code_of(f.read())
            for other in named_modules(code) | named_through(code, r"(?<![\w:])crate::", through):
                if other != top:
                    found.add(other)
    return {k: {d for d in v if d in deps} for k, v in deps.items()}


def sibling_graphs(src):
    """For every module directory below the top (its path relative to SRC): its children
    (files and directories) and the siblings each one's code names."""
    tests = test_only_files(src)
    graphs = {}
    for dirpath, dirs, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        if rel == ".":
            continue
        children = {f[:-3] for f in files if f.endswith(".rs") and f != "mod.rs"}
        children |= {d for d in dirs if any(n.endswith(".rs") for _, _, ns in os.walk(os.path.join(dirpath, d)) for n in ns)}
        crate_path = "crate::" + "::".join(rel.split(os.sep)) + "::"
        through = {n: c for n, c in reexports(parent_code(dirpath)).items() if c in children}
        deps = {c: set() for c in children}
        for child in children:
            paths = []
            if os.path.isfile(os.path.join(dirpath, child + ".rs")):
                paths.append((os.path.join(dirpath, child + ".rs"), 1))
            for d, _, names in os.walk(os.path.join(dirpath, child)):
                below = os.path.relpath(d, dirpath).count(os.sep) + 1
                for n in names:
                    if n.endswith(".rs"):
                        paths.append((os.path.join(d, n), below + (0 if n == "mod.rs" else 1)))
            for path, depth in paths:
                if path in tests:
                    continue
                with open(path) as f:
                    code = code_of(f.read())
                supers = r"(?<![\w:])" + "super::" * depth
                named = named_modules(code, supers)
                named |= named_modules(code, re.escape(crate_path))
                named |= named_through(code, supers, through)
                named |= named_through(code, re.escape(crate_path), through)
                deps[child] |= {n for n in named if n in children and n != child}
        graphs[rel] = deps
    return graphs


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
    found = 0
    graphs = [(src, deps)] + [
        (os.path.join(src, rel), g) for rel, g in sorted(sibling_graphs(src).items())
    ]
    for where, graph in graphs:
        if "--edges" in sys.argv and where != src:
            for k in sorted(graph):
                if graph[k]:
                    print(f"{where}: {k} -> {' '.join(sorted(graph[k]))}")
        for comp in circles(graph):
            found += 1
            inner = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
            print(f"circle of {len(comp)} modules in {where}: {', '.join(inner)}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
