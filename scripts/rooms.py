#!/usr/bin/env python3
"""Prints the numbers of the code's rooms, measured the same way every time:

    scripts/rooms.py [--limit-strings N]

- each crate's `src/` lines (`wc -l`) and its code lines (no blank lines, no comments,
  no test modules: inline ones under `#[cfg(test)]` or `#[cfg(all(test, ...))]`, and
  files declared under them, such as `#[cfg(test)] mod model;`), test files left out of
  both;
- `Result<_, String>` written outside tests, per crate (each one a failure whose kind a
  caller cannot match on);
- the binary's code lines and how many of the coordinator's modules it names;
- the longest functions outside tests;
- circles between the top-level modules of each crate (see `module-cycles.py`).

With `--limit-strings N` it exits 1 when more than N `Result<_, String>` are written
outside tests, and with `--limit-long-functions N` when more than N functions outside tests
are over LONG_FUNCTION lines (150), so neither count can grow unseen; each limit is lowered
as the rooms are split.
"""
import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
spec = importlib.util.spec_from_file_location("cycles", os.path.join(HERE, "module-cycles.py"))
cycles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cycles)


def rust_files(src):
    """The crate's source files compiled outside tests (see `module-cycles.py`'s
    `test_only_files`)."""
    tests = cycles.test_only_files(src)
    for dirpath, _, files in os.walk(src):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            if name.endswith(".rs") and path not in tests:
                yield path


# A function outside tests over this many lines (comments included) is split by step.
LONG_FUNCTION = 150


def code_lines(code):
    return [l for l in code.splitlines() if l.strip() and not l.lstrip().startswith("//")]


def string_results(code):
    """How many `Result<T, String>` types `code` writes: the error parameter (the last
    one at the top level of the brackets) is `String`; `Result<Map<String, String>>`
    is not one."""
    count = 0
    for m in re.finditer(r"\bResult<", code):
        depth, i, args, start = 1, m.end(), [], m.end()
        while i < len(code) and depth:
            if code.startswith("->", i):
                i += 2
                continue
            c = code[i]
            if c in "<([":
                depth += 1
            elif c in ">)]":
                depth -= 1
            elif c == "," and depth == 1:
                args.append(code[start:i])
                start = i + 1
            elif c in ";{}":
                break
            i += 1
        if depth == 0:
            args.append(code[start : i - 1])
            if len(args) == 2 and args[1].strip() == "String":
                count += 1
    return count


def functions(code):
    """(name, lines) of each `fn` with a body, by brace matching (good enough to rank)."""
    out = []
    for m in re.finditer(r"\bfn\s+(\w+)[^;{]*\{", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        out.append((m.group(1), code[m.start() : i].count("\n") + 1))
    return out


def main():
    limit = long_limit = None
    if "--limit-strings" in sys.argv:
        limit = int(sys.argv[sys.argv.index("--limit-strings") + 1])
    if "--limit-long-functions" in sys.argv:
        long_limit = int(sys.argv[sys.argv.index("--limit-long-functions") + 1])
    crates = sorted(os.listdir(os.path.join(ROOT, "crates")))
    total_strings, total_lines, longest, found_circles = 0, 0, [], []
    print(f"{'crate':<22} {'lines':>7} {'code':>7} {'Result<_, String>':>18}")
    for crate in crates:
        src = os.path.join(ROOT, "crates", crate, "src")
        if not os.path.isdir(src):
            continue
        lines = code = strings = 0
        for path in rust_files(src):
            with open(path) as f:
                text = f.read()
            lines += text.count("\n")
            stripped = cycles.code_of(text)
            code += len(code_lines(stripped))
            strings += string_results(stripped)
            rel = os.path.relpath(path, ROOT)
            longest.extend((n, name, rel) for name, n in functions(stripped))
        total_strings += strings
        total_lines += lines
        print(f"{crate:<22} {lines:>7} {code:>7} {strings:>18}")
        for comp in cycles.circles(cycles.modules(src)):
            found_circles.append(f"{crate}: {', '.join(comp)}")
    print(f"{'all':<22} {total_lines:>7} {'':>7} {total_strings:>18}")

    binary = os.path.join(ROOT, "crates", "strata", "src")
    named = set()
    for path in rust_files(binary):
        with open(path) as f:
            named |= set(
                re.findall(r"\b(strata_(?:coordinator|repo|store|agent|gc|wal)::\w+)", cycles.code_of(f.read()))
            )
    print(
        f"\nthe binary names {len(named)} items of engine crates past the facade (strata-api): {' '.join(sorted(named))}"
    )

    long = [f for f in sorted(longest, reverse=True) if f[0] > LONG_FUNCTION]
    print(f"\nfunctions outside tests over {LONG_FUNCTION} lines: {len(long)}")
    for n, name, rel in long or sorted(longest, reverse=True)[:3]:
        print(f"  {n:>5} lines  {name}  ({rel})")

    print("\ncircles between modules:", "none" if not found_circles else "")
    for line in found_circles:
        print(f"  {line}")
    failed = False
    if limit is not None and total_strings > limit:
        print(f"\n{total_strings} Result<_, String> outside tests, more than {limit}", file=sys.stderr)
        failed = True
    if long_limit is not None and len(long) > long_limit:
        print(
            f"\n{len(long)} functions outside tests over {LONG_FUNCTION} lines, more than {long_limit}: split the new one by step",
            file=sys.stderr,
        )
        failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
