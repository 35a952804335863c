#!/usr/bin/env python3
"""Deterministic generator of a database-like dataset for backup benchmarks.

What it makes (for --size-mib N, default 1024):
  * ~88% of the bytes: PostgreSQL-like table files of 8 KiB pages under
    base/<dboid>/<relfilenode>[.segno], split into 1 GiB segment files, with
    _fsm/_vm forks for the larger tables.  Every page has a 24-byte page
    header (LSN, checksum, pd_lower/pd_upper, ...), a line-pointer array, a
    zero-filled hole (free space) and heap tuples (tuple header + row text
    + a few per-row random bytes).  Pages zstd-compress roughly 2-3x, no two
    pages are identical (except all-zero pages at the end of some tables).
  * thousands of small text files (config, log, json, csv; 100 B - 16 KiB)
    in nested directories (3000 files at 1024 MiB, scaled with the size);
  * ~10% of the bytes: incompressible files (random bytes, 4-16 MiB each)
    under archive/.

Why: backup tools behave very differently on large, block-structured files
that change in place (dedup granularity, chunking), on many small files
(metadata, per-file overhead) and on incompressible data (compression cost).

--mutate DIR changes an existing dataset the way a running database would
between two backups: ~1% of the table pages rewritten in place (half scattered
single pages, half in runs of 1-8 consecutive pages), a few pages appended to
some tables, ~50 small files added and ~50 deleted.  It prints how many bytes
were changed.

Everything is derived from --seed, so the same command gives the same bytes.
Speed: pages are assembled from precomputed tuple pools plus per-page random
bytes, so 1 GiB takes a few tens of seconds at most.  Python 3.11 stdlib only.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import random
import struct
import sys
import time
import zlib

PAGE = 8192
PAGE_HDR = 24
DB_OID = 16384
MIB = 1 << 20
DEFAULT_SEGMENT_MIB = 1024  # PostgreSQL's RELSEG_SIZE * BLCKSZ
ZERO_PAGE = bytes(PAGE)
FORK_MIN_PAGES = 64  # tables this big get _fsm (3 pages) and _vm (1 page) forks
TABLE_DIR = "base"
ARCHIVE_DIR = "archive"
# Directories holding the "small files" (everything that is neither table nor archive).
SMALL_TOP_DIRS = ("app", "conf", "home", "pg_log", "pg_stat_tmp", "srv")


# --------------------------------------------------------------------------
# Row / tuple pools
# --------------------------------------------------------------------------

SYLLABLES = [
    "ka", "lo", "mi", "ne", "ra", "to", "zu", "be", "chi", "do", "fa", "gu",
    "hi", "jo", "ku", "le", "mo", "nu", "pa", "qui", "ri", "sa", "te", "vo",
    "wa", "xe", "yo", "an", "el", "is", "or", "um", "ber", "con", "dis", "ent",
]
STATUSES = ["new", "paid", "shipped", "delivered", "cancelled", "refunded", "on_hold"]
LEVELS = ["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "SE", "PL", "ES", "IT", "JP", "BR", "IN", "CA"]
CURRENCIES = ["EUR", "USD", "GBP", "SEK", "PLN", "JPY"]
SERVICES = ["api", "billing", "auth", "search", "worker", "scheduler", "gateway", "mailer"]
TABLE_KINDS = ("orders", "events", "users", "inventory")


def make_vocab(rng: random.Random, n: int = 3000) -> list[str]:
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def make_row(rng: random.Random, kind: str, rid: int, vocab: list[str]) -> str:
    r = rng.random
    w = vocab
    nv = len(w)

    def words(k: int) -> str:
        return " ".join(w[int(r() * nv)] for _ in range(k))

    ts = 1_700_000_000 + rid * 7 + int(r() * 5000)
    if kind == "orders":
        return (f"{rid}|{int(r() * 500000)}|{ts}|{STATUSES[int(r() * 7)]}|"
                f"{r() * 2000:.2f}|{CURRENCIES[int(r() * 6)]}|"
                f"{int(r() * 999) + 1} {words(2)} street|{COUNTRIES[int(r() * 13)]}|{words(int(r() * 6))}")
    if kind == "events":
        return (f"{rid}|{ts}|{LEVELS[int(r() * 6)]}|{SERVICES[int(r() * 8)]}|"
                f"{words(3 + int(r() * 8))} user_id={int(r() * 100000)} "
                f"latency_ms={int(r() * 900)} trace={int(r() * 2**48):012x}")
    if kind == "users":
        a, b = w[int(r() * nv)], w[int(r() * nv)]
        return (f"{rid}|{a}{b}{int(r() * 100)}|{a}.{b}@{w[int(r() * nv)]}.example.com|"
                f"{a.title()} {b.title()}|{COUNTRIES[int(r() * 13)]}|{ts}|{words(int(r() * 12))}")
    # inventory
    return (f"SKU-{rid:08d}|{words(2 + int(r() * 3))}|{int(r() * 10000)}|{r() * 500:.2f}|"
            f"wh-{int(r() * 40):02d}|{{\"color\":\"{w[int(r() * nv)]}\",\"weight_g\":{int(r() * 5000)},"
            f"\"tags\":[\"{w[int(r() * nv)]}\",\"{w[int(r() * nv)]}\"]}}")


class PagePools:
    """Per table-kind pools of ready-made heap tuples (tuple header + row text,
    MAXALIGN-padded).  A page takes a random run of consecutive tuples from the
    pool of its table's kind and appends `rsz` fresh random bytes to every tuple
    (a uuid/hash/bytea-like column), which makes every page unique and sets the
    compressibility."""

    def __init__(self, seed: int, tuples_per_kind: int):
        rng = random.Random(f"pools-{seed}")
        vocab = make_vocab(rng)
        self.vocab = vocab
        self.pools: dict[str, list[bytes]] = {}
        self.lens: dict[str, list[int]] = {}
        self.prefix: dict[tuple[str, int], list[int]] = {}
        pack_tup = struct.Struct("<IIIHHHHHBx").pack  # 24-byte heap tuple header
        for kind in TABLE_KINDS:
            pool = []
            xmin = 1000 + rng.randrange(10_000)
            for rid in range(1, tuples_per_kind + 1):
                text = make_row(rng, kind, rid, vocab).encode()
                xmin += rng.randrange(3)
                hdr = pack_tup(xmin, 0, 0, 0, rid // 60, rid % 60 + 1, 7, 0x0902, 24)
                pad = (-len(text)) % 8
                pool.append(hdr + text + bytes(pad))
            self.pools[kind] = pool
            self.lens[kind] = [len(t) for t in pool]

    def prefix_for(self, kind: str, rsz: int) -> list[int]:
        key = (kind, rsz)
        p = self.prefix.get(key)
        if p is None:
            # space needed by tuple i on a page: tuple + random column + line pointer
            p = list(itertools.accumulate((ln + rsz + 4 for ln in self.lens[kind]), initial=0))
            self.prefix[key] = p
        return p


class TableParams:
    """Per-table shape, derived from the relfilenode only (so --mutate can
    rebuild pages of the same kind without any metadata file)."""

    def __init__(self, relfilenode: int):
        r = random.Random(f"table-{relfilenode}")
        self.kind = r.choice(TABLE_KINDS)
        self.rsz = r.choice((16, 24, 32, 40, 48))      # random bytes per tuple
        self.fill = r.uniform(0.80, 1.0)                # fillfactor-ish
        self.zero_tail = r.randint(1, 16) if r.random() < 0.3 else 0


_hdr_pack = struct.Struct("<IIHHHHHHI").pack  # PageHeaderData, 24 bytes


def build_page(pools: PagePools, rng: random.Random, tp: TableParams, lsn: int) -> bytes:
    kind, rsz = tp.kind, tp.rsz
    pool = pools.pools[kind]
    lens = pools.lens[kind]
    pref = pools.prefix_for(kind, rsz)
    # free space varies page to page around the table's fill factor
    avail = int((PAGE - PAGE_HDR) * min(1.0, tp.fill + rng.uniform(-0.05, 0.05)))
    i = rng.randrange(len(pool) - 400)
    j = bisect.bisect_right(pref, pref[i] + avail, i) - 1
    n = j - i
    tuples = pool[i:j]
    rb = rng.randbytes(n * rsz)
    parts: list = [None] * (2 * n)
    parts[0::2] = tuples
    parts[1::2] = [rb[k:k + rsz] for k in range(0, n * rsz, rsz)]
    data = b"".join(parts)
    upper = PAGE - len(data)
    lower = PAGE_HDR + 4 * n
    tl = [ln + rsz for ln in lens[i:j]]
    offs = itertools.accumulate(tl, initial=upper)
    lp = struct.pack(f"<{n}I", *[off | (1 << 15) | (ln << 17) for off, ln in zip(offs, tl)])
    body = lp + ZERO_PAGE[: upper - lower] + data
    csum = zlib.crc32(body) & 0xFFFF
    hdr = _hdr_pack(lsn >> 32, lsn & 0xFFFFFFFF, csum, 0, lower, upper, PAGE, PAGE | 4, 0)
    return hdr + body


# --------------------------------------------------------------------------
# Small text files
# --------------------------------------------------------------------------

def small_file_text(rng: random.Random, ext: str, size: int, vocab: list[str]) -> bytes:
    r = rng.random
    nv = len(vocab)
    lines: list[str] = []
    total = 0
    ts = 1_700_000_000 + rng.randrange(10_000_000)
    if ext == ".json":
        lines.append("{")
    i = 0
    while total < size:
        i += 1
        if ext == ".log":
            ts += int(r() * 30)
            line = (f"2024-{1 + int(r() * 12):02d}-{1 + int(r() * 28):02d} "
                    f"{int(r() * 24):02d}:{int(r() * 60):02d}:{int(r() * 60):02d}.{int(r() * 1000):03d} UTC "
                    f"[{int(r() * 90000) + 1000}] {LEVELS[int(r() * 6)]}:  "
                    + " ".join(vocab[int(r() * nv)] for _ in range(2 + int(r() * 10)))
                    + (f" duration: {r() * 900:.3f} ms" if r() < 0.3 else ""))
        elif ext == ".json":
            k = vocab[int(r() * nv)]
            v = r()
            if v < 0.3:
                line = f'  "{k}_{i}": {int(r() * 100000)},'
            elif v < 0.6:
                line = f'  "{k}_{i}": "{vocab[int(r() * nv)]} {vocab[int(r() * nv)]}",'
            elif v < 0.8:
                line = f'  "{k}_{i}": {{"enabled": {"true" if r() < 0.5 else "false"}, "ratio": {r():.4f}}},'
            else:
                line = f'  "{k}_{i}": ["{vocab[int(r() * nv)]}", "{vocab[int(r() * nv)]}", {int(r() * 99)}],'
        elif ext == ".conf":
            if r() < 0.2:
                line = "# " + " ".join(vocab[int(r() * nv)] for _ in range(3 + int(r() * 8)))
            else:
                line = f"{vocab[int(r() * nv)]}_{vocab[int(r() * nv)]} = {int(r() * 4096)}"
        elif ext == ".csv":
            line = ",".join((str(int(r() * 100000)), vocab[int(r() * nv)], f"{r() * 1000:.3f}",
                             COUNTRIES[int(r() * 13)], str(ts + i)))
        else:  # .txt
            line = " ".join(vocab[int(r() * nv)] for _ in range(4 + int(r() * 12)))
        lines.append(line)
        total += len(line) + 1
    if ext == ".json":
        lines.append('  "_end": true\n}')
    return ("\n".join(lines) + "\n").encode()[:size]


def make_dir_tree(rng: random.Random, vocab: list[str], ndirs: int) -> list[str]:
    dirs = ["conf", "pg_log", "pg_stat_tmp"]
    for d in ("app/services", "home", "srv/www"):
        dirs.append(d)
    while len(dirs) < ndirs:
        parent = rng.choice(dirs)
        if parent.count("/") >= 4:
            continue
        dirs.append(f"{parent}/{rng.choice(vocab)}-{rng.randrange(100)}")
    return sorted(set(dirs))


EXT_BY_TOP = {
    "conf": (".conf", ".conf", ".json"),
    "pg_log": (".log",),
    "pg_stat_tmp": (".csv", ".json"),
    "app": (".json", ".conf", ".log", ".txt"),
    "home": (".txt", ".csv", ".json"),
    "srv": (".txt", ".json", ".log"),
}


def small_size(rng: random.Random) -> int:
    # log-uniform 100 B .. 16 KiB
    return int(math.exp(rng.uniform(math.log(100), math.log(16384))))


def write_small_file(path: str, rng: random.Random, vocab: list[str]) -> int:
    top = path.split("/", 1)[0]
    ext = rng.choice(EXT_BY_TOP.get(top, (".txt",)))
    full = path + ext
    data = small_file_text(rng, ext, small_size(rng), vocab)
    with open(full, "wb") as f:
        f.write(data)
    return len(data)


# --------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------

def table_sizes(rng: random.Random, total_pages: int) -> list[int]:
    """Split total_pages over tables of very different sizes (a few big ones,
    many small ones) - roughly what a real database looks like."""
    ntables = 24
    weights = [1.0 / (k + 1) ** 1.3 for k in range(ntables)]
    rng.shuffle(weights)
    s = sum(weights)
    sizes = [max(1, int(total_pages * w / s)) for w in weights]
    sizes[sizes.index(max(sizes))] += total_pages - sum(sizes)
    return sizes


class TableWriter:
    """Writes one relation as 1 GiB (or --segment-mib) segment files."""

    def __init__(self, dirpath: str, relfilenode: int, seg_pages: int):
        self.dirpath = dirpath
        self.rel = relfilenode
        self.seg_pages = seg_pages
        self.segno = 0
        self.in_seg = 0
        self.f = open(self._name(), "wb")
        self.buf: list[bytes] = []

    def _name(self) -> str:
        base = os.path.join(self.dirpath, str(self.rel))
        return base if self.segno == 0 else f"{base}.{self.segno}"

    def add(self, page: bytes) -> None:
        if self.in_seg == self.seg_pages:
            self.flush()
            self.f.close()
            self.segno += 1
            self.in_seg = 0
            self.f = open(self._name(), "wb")
        self.buf.append(page)
        self.in_seg += 1
        if len(self.buf) >= 128:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.f.write(b"".join(self.buf))
            self.buf = []

    def close(self) -> None:
        self.flush()
        self.f.close()


def generate(out: str, size_mib: int, seed: int, segment_mib: int, small_files: int | None) -> dict:
    t0 = time.monotonic()
    if os.path.exists(out) and os.listdir(out):
        sys.exit(f"gen_dataset: output directory {out} exists and is not empty (remove it first)")
    os.makedirs(out, exist_ok=True)
    total = size_mib * MIB
    rng = random.Random(seed)
    seg_pages = segment_mib * MIB // PAGE

    # ---- budget
    if small_files is None:
        small_files = max(200, round(3000 * size_mib / 1024))
    rand_budget = total // 10
    pools = PagePools(seed, tuples_per_kind=60_000)
    vocab = pools.vocab
    stats = {"seed": seed, "size_mib": size_mib}

    # ---- small files
    srng = random.Random(f"small-{seed}")
    dirs = make_dir_tree(srng, vocab, ndirs=max(20, small_files // 20))
    for d in dirs:
        os.makedirs(os.path.join(out, d), exist_ok=True)
    small_bytes = 0
    for k in range(small_files):
        d = srng.choice(dirs)
        small_bytes += write_small_file(os.path.join(out, d, f"f{k:05d}"), srng, vocab)
    with open(os.path.join(out, "PG_VERSION"), "w") as f:
        f.write("16\n")
    stats.update(small_files=small_files + 1, small_bytes=small_bytes)

    # ---- incompressible files
    arng = random.Random(f"archive-{seed}")
    os.makedirs(os.path.join(out, ARCHIVE_DIR), exist_ok=True)
    left = rand_budget
    k = 0
    while left > 0:
        sz = min(left, arng.randint(4, 16) * MIB)
        if left - sz < MIB:
            sz = left
        with open(os.path.join(out, ARCHIVE_DIR, f"dump-{k:03d}.zst"), "wb") as f:
            rem = sz
            while rem:
                c = min(rem, MIB)
                f.write(arng.randbytes(c))
                rem -= c
        left -= sz
        k += 1
    stats.update(random_files=k, random_bytes=rand_budget)

    # ---- tables
    table_budget = max(0, total - rand_budget - small_bytes)
    table_pages = table_budget // PAGE
    # a small catalog database (base/1) with many tiny relations, then the main one
    catalog = [rng.randint(1, 24) for _ in range(30)]
    sizes = table_sizes(rng, max(24 * 8, table_pages - sum(catalog)))
    forks = 4 * sum(1 for n in sizes if n >= FORK_MIN_PAGES)  # _fsm + _vm pages
    sizes[sizes.index(max(sizes))] -= forks
    layout = [(1, 1200 + i, n) for i, n in enumerate(catalog)]
    layout += [(DB_OID, DB_OID + 1 + 3 * i, n) for i, n in enumerate(sizes)]
    lsn = 0x1_0000_0000 + rng.randrange(1 << 24)
    npages = nzero = nfiles = 0
    prng = random.Random(f"pages-{seed}")
    for db, rel, pages in layout:
        d = os.path.join(out, TABLE_DIR, str(db))
        os.makedirs(d, exist_ok=True)
        tp = TableParams(rel)
        zt = min(tp.zero_tail, pages // 4)
        w = TableWriter(d, rel, seg_pages)
        for p in range(pages):
            if p >= pages - zt:
                w.add(ZERO_PAGE)
                nzero += 1
            else:
                lsn += prng.randrange(1, 4096)
                w.add(build_page(pools, prng, tp, lsn))
        w.close()
        nfiles += w.segno + 1
        npages += pages
        if pages >= FORK_MIN_PAGES:  # free space map + visibility map forks
            with open(os.path.join(d, f"{rel}_fsm"), "wb") as f:
                for _ in range(3):
                    f.write(prng.randbytes(64) + bytes(PAGE - 64))
            with open(os.path.join(d, f"{rel}_vm"), "wb") as f:
                f.write(prng.randbytes(PAGE // 8) + bytes(PAGE - PAGE // 8))
            nfiles += 2
            npages += 4
    stats.update(table_files=nfiles, table_pages=npages, table_bytes=npages * PAGE, zero_pages=nzero,
                 largest_table_mib=round(max(n for _, _, n in layout) * PAGE / MIB, 1))
    total_bytes = 0
    total_files = 0
    for root, _, files in os.walk(out):
        for fn in files:
            total_files += 1
            total_bytes += os.lstat(os.path.join(root, fn)).st_size
    stats.update(total_files=total_files, total_bytes=total_bytes,
                 seconds=round(time.monotonic() - t0, 1))
    return stats


# --------------------------------------------------------------------------
# mutate
# --------------------------------------------------------------------------

def list_tables(out: str) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """-> [(dir, relfilenode, [(segment path, pages), ...])] for main forks."""
    rels: dict[tuple[str, int], list[tuple[int, str, int]]] = {}
    base = os.path.join(out, TABLE_DIR)
    for db in sorted(os.listdir(base)):
        d = os.path.join(base, db)
        for fn in os.listdir(d):
            name, _, seg = fn.partition(".")
            if not name.isdigit() or (seg and not seg.isdigit()):
                continue  # _fsm / _vm forks etc.
            p = os.path.join(d, fn)
            rels.setdefault((d, int(name)), []).append((int(seg or 0), p, os.path.getsize(p) // PAGE))
    result = []
    for (d, rel) in sorted(rels):
        segs = sorted(rels[(d, rel)])
        result.append((d, rel, [(p, n) for _, p, n in segs]))
    return result


def list_small_files(out: str) -> list[str]:
    found = []
    for top in SMALL_TOP_DIRS:
        for root, dirs, files in os.walk(os.path.join(out, top)):
            dirs.sort()
            for fn in sorted(files):
                found.append(os.path.relpath(os.path.join(root, fn), out))
    return sorted(found)


def mutate(out: str, seed: int, segment_mib: int, change_pct: float, nsmall: int | None) -> dict:
    t0 = time.monotonic()
    if not os.path.isdir(os.path.join(out, TABLE_DIR)):
        sys.exit(f"gen_dataset: {out} does not look like a generated dataset (no {TABLE_DIR}/)")
    rng = random.Random(f"mutate-{seed}")
    pools = PagePools(seed + 7919, tuples_per_kind=30_000)
    vocab = pools.vocab
    tables = list_tables(out)

    # global page index -> (segment path, page in segment, relfilenode)
    segs: list[tuple[str, int, int]] = []  # (path, npages, rel)
    for _, rel, seglist in tables:
        for p, n in seglist:
            segs.append((p, n, rel))
    starts = list(itertools.accumulate((n for _, n, _ in segs), initial=0))
    total_pages = starts[-1]
    target = max(2, round(total_pages * change_pct / 100))

    changed: set[int] = set()
    # half: scattered single pages
    while len(changed) < target // 2:
        changed.add(rng.randrange(total_pages))
    # half: clustered runs of 1-8 consecutive pages (inside one segment file)
    runs = 0
    while len(changed) < target:
        g = rng.randrange(total_pages)
        si = bisect.bisect_right(starts, g) - 1
        end = starts[si + 1]
        for x in range(g, min(end, g + rng.randint(1, 8))):
            changed.add(x)
        runs += 1

    lsn = 0x2_0000_0000 + seed * 0x100000 + rng.randrange(1 << 20)
    by_seg: dict[int, list[int]] = {}
    for g in sorted(changed):
        si = bisect.bisect_right(starts, g) - 1
        by_seg.setdefault(si, []).append(g - starts[si])
    for si, pages in sorted(by_seg.items()):
        path, _, rel = segs[si]
        tp = TableParams(rel)
        with open(path, "r+b") as f:
            for pno in pages:
                lsn += rng.randrange(1, 4096)
                f.seek(pno * PAGE)
                f.write(build_page(pools, rng, tp, lsn))
    changed_bytes = len(changed) * PAGE

    # append pages to about a quarter of the tables
    appended = 0
    for _, rel, seglist in rng.sample(tables, max(1, len(tables) // 4)):
        seg_pages = (os.path.getsize(seglist[0][0]) // PAGE if len(seglist) > 1
                     else segment_mib * MIB // PAGE)
        path, n = seglist[-1]
        tp = TableParams(rel)
        for _ in range(rng.randint(1, 32)):
            if n >= seg_pages:  # start the next segment file like PostgreSQL does
                base, _, segno = os.path.basename(path).partition(".")
                path = os.path.join(os.path.dirname(path), f"{base}.{int(segno or 0) + 1}")
                n = 0
            lsn += rng.randrange(1, 4096)
            with open(path, "ab") as f:
                f.write(build_page(pools, rng, tp, lsn))
            n += 1
            appended += 1

    # small files: delete ~50, add ~50
    small = list_small_files(out)
    k = nsmall if nsmall is not None else max(5, min(50, len(small) // 10))
    deleted_bytes = 0
    for rel_path in rng.sample(small, min(k, len(small))):
        p = os.path.join(out, rel_path)
        deleted_bytes += os.path.getsize(p)
        os.unlink(p)
    dirs = sorted({os.path.dirname(s) for s in small})
    added_bytes = 0
    for i in range(k):
        d = rng.choice(dirs)
        os.makedirs(os.path.join(out, d), exist_ok=True)
        added_bytes += write_small_file(os.path.join(out, d, f"new-s{seed}-{i:03d}"), rng, vocab)

    return {
        "seed": seed, "table_pages": total_pages, "changed_pages": len(changed),
        "changed_bytes": changed_bytes, "changed_files": len(by_seg), "clustered_runs": runs,
        "appended_pages": appended, "appended_bytes": appended * PAGE,
        "small_deleted": k, "small_deleted_bytes": deleted_bytes,
        "small_added": k, "small_added_bytes": added_bytes,
        "seconds": round(time.monotonic() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="dataset directory (created; must be empty) or, with --mutate, existing dataset")
    ap.add_argument("--size-mib", type=int, default=1024, help="total dataset size in MiB (default 1024)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--mutate", action="store_true", help="mutate an existing dataset in place instead")
    ap.add_argument("--change-pct", type=float, default=1.0, help="--mutate: %% of table pages rewritten (default 1)")
    ap.add_argument("--small-files", type=int, default=None,
                    help="number of small files (default 3000 per GiB, at least 200); "
                         "with --mutate: files added and deleted (default 50)")
    ap.add_argument("--segment-mib", type=int, default=DEFAULT_SEGMENT_MIB,
                    help="max table segment file size (default 1024, as PostgreSQL)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    args = ap.parse_args()
    if args.segment_mib * MIB % PAGE:
        ap.error("--segment-mib must be a multiple of 8 KiB")

    if args.mutate:
        s = mutate(args.dir, args.seed, args.segment_mib, args.change_pct, args.small_files)
        if args.json:
            print(json.dumps(s))
        else:
            print(f"mutated {args.dir} (seed {s['seed']}) in {s['seconds']} s:\n"
                  f"  pages rewritten in place: {s['changed_pages']} of {s['table_pages']} "
                  f"= {s['changed_bytes']} bytes ({s['changed_bytes'] / MIB:.1f} MiB) "
                  f"in {s['changed_files']} files, half scattered, half in {s['clustered_runs']} runs of 1-8\n"
                  f"  pages appended: {s['appended_pages']} = {s['appended_bytes']} bytes\n"
                  f"  small files: {s['small_deleted']} deleted ({s['small_deleted_bytes']} bytes), "
                  f"{s['small_added']} added ({s['small_added_bytes']} bytes)")
    else:
        if args.size_mib < 8:
            ap.error("--size-mib must be at least 8")
        s = generate(args.dir, args.size_mib, args.seed, args.segment_mib, args.small_files)
        if args.json:
            print(json.dumps(s))
        else:
            print(f"generated {args.dir} (seed {s['seed']}) in {s['seconds']} s: "
                  f"{s['total_bytes']} bytes ({s['total_bytes'] / MIB:.1f} MiB) in {s['total_files']} files\n"
                  f"  tables: {s['table_files']} files, {s['table_pages']} pages "
                  f"({s['table_bytes'] / MIB:.1f} MiB, {s['zero_pages']} all-zero, "
                  f"largest table {s['largest_table_mib']} MiB)\n"
                  f"  small files: {s['small_files']} ({s['small_bytes'] / MIB:.1f} MiB)\n"
                  f"  incompressible: {s['random_files']} files ({s['random_bytes'] / MIB:.1f} MiB)")


if __name__ == "__main__":
    main()
