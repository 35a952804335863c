#!/usr/bin/env python3
"""Hash a directory tree, and check a restored tree against it.

    treehash.py manifest SRC_DIR > manifest.json
    treehash.py verify manifest.json RESTORED_DIR

`verify` fails (exit 1) if a file or directory is missing or extra, or if any
file's content (SHA-256), type or symlink target differs.  Permission bits and
mtimes are compared too, but only reported, since tools differ in what they
restore.  Used by bench/run.sh; its time is not part of the restore time.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys


def hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def walk(root: str) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            e = {"mode": stat.S_IMODE(st.st_mode), "mtime": int(st.st_mtime)}
            if stat.S_ISLNK(st.st_mode):
                e.update(type="link", target=os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                e.update(type="dir")
            elif stat.S_ISREG(st.st_mode):
                e.update(type="file", size=st.st_size, sha256=hash_file(p))
            else:
                e.update(type="other")
            entries[rel] = e
    return entries


def verify(manifest: dict[str, dict], root: str) -> int:
    if not os.path.isdir(root):
        print(f"verify: FAILED: restored directory {root} does not exist")
        return 1
    got = walk(root)
    missing = sorted(set(manifest) - set(got))
    extra = sorted(set(got) - set(manifest))
    differ = []
    mode_diff = mtime_diff = 0
    for rel in sorted(set(manifest) & set(got)):
        a, b = manifest[rel], got[rel]
        if (a["type"], a.get("sha256"), a.get("target")) != (b["type"], b.get("sha256"), b.get("target")):
            differ.append(rel)
        if a["mode"] != b["mode"]:
            mode_diff += 1
        if a["type"] == "file" and a["mtime"] != b["mtime"]:
            mtime_diff += 1
    nfiles = sum(1 for e in manifest.values() if e["type"] == "file")
    nbytes = sum(e.get("size", 0) for e in manifest.values())
    ok = not (missing or extra or differ)
    for label, items in (("missing", missing), ("extra", extra), ("content differs", differ)):
        if items:
            print(f"verify: {len(items)} {label}: " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
    print(f"verify: {'OK' if ok else 'FAILED'}: {nfiles} files, {nbytes} bytes compared; "
          f"metadata: {mode_diff} entries with other permissions, {mtime_diff} files with other mtime")
    return 0 if ok else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "manifest":
        json.dump(walk(sys.argv[2]), sys.stdout)
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "verify":
        with open(sys.argv[2]) as f:
            manifest = json.load(f)
        return verify(manifest, sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
