#!/usr/bin/env python3
"""Prints where the time of the test command (scripts/test.sh) went:

    scripts/test-times.py [--phases FILE] [--junit FILE | --log FILE] [--top N]

- the wall time of each phase of scripts/test.sh, from the file it writes as it goes
  (`target/test-times/phases.tsv`: one `NAME<TAB>SECONDS` line a phase; phases marked
  "(beside)" ran in the background, beside the ones after them, and are not part of the
  sum of the others);
- the N (15) slowest tests, from nextest's JUnit report (`target/nextest/ci/junit.xml`,
  see `.config/nextest.toml`), or from a log of `cargo nextest run` (`--log`: its
  `PASS [  12.345s] crate::binary test` lines), with their sum and count.

Either part is left out, saying so, when its file is missing. Exits 0 whatever the times.
"""
import argparse
import os
import re
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fmt(secs):
    secs = float(secs)
    if secs >= 60:
        return f"{int(secs // 60)} min {secs % 60:04.1f} s"
    return f"{secs:.1f} s"


def phases(path):
    rows = []
    with open(path) as f:
        for line in f:
            name, _, secs = line.rstrip("\n").rpartition("\t")
            if name:
                rows.append((name, float(secs)))
    return rows


def junit_tests(path):
    """(seconds, status, "binary test") for every test case of a nextest JUnit report."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "FAIL"
            elif child.tag == "skipped":
                status = "skip"
        name = f"{case.get('classname', '')} {case.get('name', '')}".strip()
        out.append((float(case.get("time") or 0), status, name))
    return out


LOG_LINE = re.compile(r"^\s*(PASS|FAIL|SLOW|TIMEOUT|LEAK|FLAKY|SIGKILL|SIGSEGV|ABORT)\b.*?\[\s*([0-9.]+)s\]\s+(?:\([^)]*\)\s+)?(\S+)\s+(.+?)\s*$")


def log_tests(path):
    """The same from a log of `cargo nextest run`: the last line of each test (a SLOW line
    is replaced by the test's PASS or FAIL line)."""
    seen = {}
    with open(path, errors="replace") as f:
        for line in f:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            m = LOG_LINE.match(line)
            if not m or m.group(1) == "SLOW":
                continue
            status = "pass" if m.group(1) == "PASS" else "FAIL"
            seen[f"{m.group(3)} {m.group(4)}"] = (float(m.group(2)), status)
    return [(secs, status, name) for name, (secs, status) in seen.items()]


def shown(path):
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default=os.path.join(ROOT, "target/test-times/phases.tsv"))
    ap.add_argument("--junit", default=os.path.join(ROOT, "target/nextest/ci/junit.xml"))
    ap.add_argument("--log", help="a log of `cargo nextest run` instead of the JUnit report")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()

    print("== the test command's phases (wall time)")
    if os.path.exists(args.phases):
        rows = phases(args.phases)
        width = max([len(n) for n, _ in rows] + [len("sum of the phases in line")])
        for name, secs in rows:
            print(f"  {name:<{width}}  {fmt(secs):>12}")
        inline = sum(s for n, s in rows if not n.endswith("(beside)") and n != "whole command")
        print(f"  {'sum of the phases in line':<{width}}  {fmt(inline):>12}")
    else:
        print(f"  (no {shown(args.phases)}: scripts/test.sh writes it)")

    source = args.log or args.junit
    print(f"\n== the {args.top} slowest tests ({shown(source)})")
    if not os.path.exists(source):
        print("  (missing: `cargo nextest run` writes the JUnit report, .config/nextest.toml)")
        return 0
    tests = log_tests(source) if args.log else junit_tests(source)
    tests.sort(key=lambda t: -t[0])
    for secs, status, name in tests[: args.top]:
        print(f"  {secs:8.1f} s  {status:4}  {name}")
    total = sum(t[0] for t in tests)
    failed = sum(1 for t in tests if t[1] == "FAIL")
    print(
        f"  {len(tests)} tests, {failed} failed; their times add up to {fmt(total)}"
        f" (the {args.top} slowest: {fmt(sum(t[0] for t in tests[: args.top]))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
