#!/usr/bin/env python3
"""Turn the raw measurements of bench/run.sh into a markdown report.

    report.py WORK_DIR OUT.md [--history FILE]

Reads WORK_DIR/results.tsv (one line per measured step) and WORK_DIR/meta.tsv
(key<TAB>value), writes OUT.md and prints it.  Every metric is shown as an
absolute number and as a ratio to restic (the reference tool).

With --history, the peers' (every tool but strata) wall times of this run are held
against the median of their earlier runs on the same dataset (size and seed) recorded in
FILE, and then appended to it: a peer more than 30% off its median ran abnormally, and
the ratios against it are no result (the report says so at the top).
"""

from __future__ import annotations

import json
import os
import sys

MIB = 1 << 20
COLS = ["tool", "step", "status", "wall_s", "user_s", "sys_s", "rss_kib",
        "repo_bytes", "cache_bytes", "data_bytes", "note"]
REF = "restic"


def load(work: str):
    rows = []
    with open(os.path.join(work, "results.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if not parts or parts[0] == "tool":
                continue
            parts += [""] * (len(COLS) - len(parts))
            rows.append(dict(zip(COLS, parts)))
    meta = {}
    mp = os.path.join(work, "meta.tsv")
    if os.path.exists(mp):
        with open(mp) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("\t")
                meta[k] = v
    return rows, meta


HISTORY_COLS = ["date", "tool", "version", "size_mib", "seed", "step", "wall_s"]
# A peer this far off the median of its earlier runs ran abnormally.
ABNORMAL = 0.30
PEER_STEPS = ("backup1", "backup2", "restore")


def load_history(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == len(HISTORY_COLS) and parts[0] != "date":
                out.append(dict(zip(HISTORY_COLS, parts)))
    return out


def median(values: list[float]) -> float:
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def peer_check(rows: list[dict], meta: dict, history: list[dict]) -> list[list[str]]:
    """Per peer and step: this run's wall time, the median of its earlier runs on the
    same dataset, how far off, and whether that is abnormal."""
    dataset = json.loads(meta["dataset_json"]) if meta.get("dataset_json") else {}
    size, seed = str(dataset.get("size_mib", "")), str(dataset.get("seed", ""))
    out = []
    for r in rows:
        if r["tool"] == "strata" or r["step"] not in PEER_STEPS or r["status"] != "ok":
            continue
        wall = num(r["wall_s"])
        earlier = [num(h["wall_s"]) for h in history
                   if (h["tool"], h["step"], h["size_mib"], h["seed"]) == (r["tool"], r["step"], size, seed)]
        earlier = [e for e in earlier if e]
        if wall is None or not earlier:
            out.append([r["tool"], r["step"], fmt(wall, " s"), "-", "0", "-", "no earlier run"])
            continue
        med = median(earlier)
        off = wall / med - 1
        out.append([r["tool"], r["step"], fmt(wall, " s"), fmt(med, " s"), str(len(earlier)),
                    f"{off:+.0%}", "**abnormal**" if abs(off) > ABNORMAL else "ok"])
    return out


def append_history(path: str, rows: list[dict], meta: dict) -> None:
    dataset = json.loads(meta["dataset_json"]) if meta.get("dataset_json") else {}
    new = not os.path.exists(path)
    with open(path, "a") as f:
        if new:
            f.write("\t".join(HISTORY_COLS) + "\n")
        for r in rows:
            if r["tool"] == "strata" or r["step"] not in PEER_STEPS or r["status"] != "ok":
                continue
            f.write("\t".join([meta.get("date", "?"), r["tool"], meta.get(f"version_{r['tool']}", "?"),
                               str(dataset.get("size_mib", "")), str(dataset.get("seed", "")),
                               r["step"], r["wall_s"]]) + "\n")


def num(x: str) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main() -> int:
    args = sys.argv[1:]
    history_path = None
    if len(args) == 4 and args[2] == "--history":
        history_path = args[3]
        args = args[:2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    work, out_md = args
    rows, meta = load(work)
    checks = peer_check(rows, meta, load_history(history_path)) if history_path else []
    tools = [t for t in meta.get("tools", "").split(",") if t]
    by = {(r["tool"], r["step"]): r for r in rows}
    dataset = json.loads(meta["dataset_json"]) if meta.get("dataset_json") else {}
    mut = json.loads(meta["mutate_json"]) if meta.get("mutate_json") else {}

    def val(tool: str, step: str, metric: str) -> float | None:
        r = by.get((tool, step))
        if not r or r["status"] != "ok":
            return None
        if metric == "wall":
            return num(r["wall_s"])
        if metric == "cpu":
            u, s = num(r["user_s"]), num(r["sys_s"])
            return None if u is None or s is None else u + s
        if metric == "rss":
            v = num(r["rss_kib"])
            return None if v is None else v / 1024
        if metric == "repo":
            v = num(r["repo_bytes"])
            return None if v is None else v / MIB
        if metric == "cache":
            v = num(r["cache_bytes"])
            return None if v is None else v / MIB
        if metric == "tput":
            w, d = num(r["wall_s"]), num(r["data_bytes"])
            return None if not w or d is None else d / MIB / w
        if metric == "amp":
            g = val(tool, "backup2", "growth")
            changed = (mut.get("changed_bytes", 0) + mut.get("appended_bytes", 0)
                       + mut.get("small_added_bytes", 0)) / MIB
            return None if g is None or not changed else g / changed
        if metric == "growth":
            a = val(tool, "backup1", "repo")
            b = val(tool, "backup2", "repo")
            return None if a is None or b is None else b - a
        raise KeyError(metric)

    metrics = [
        ("first backup", "backup1", [("wall time", "wall", " s"), ("CPU user+sys", "cpu", " s"),
                                     ("peak RSS", "rss", " MiB"), ("throughput", "tput", " MiB/s"),
                                     ("repo size", "repo", " MiB")]),
        ("second backup (after mutation)", "backup2", [("wall time", "wall", " s"), ("CPU user+sys", "cpu", " s"),
                                                       ("peak RSS", "rss", " MiB"), ("repo size", "repo", " MiB"),
                                                       ("repo growth", "growth", " MiB"),
                                                       ("growth / raw bytes changed", "amp", "x"),
                                                       ("local cache/state", "cache", " MiB")]),
        ("restore latest (full)", "restore", [("wall time", "wall", " s"), ("CPU user+sys", "cpu", " s"),
                                              ("peak RSS", "rss", " MiB"), ("throughput", "tput", " MiB/s")]),
        ("init", "init", [("wall time", "wall", " s")]),
    ]
    others = [t for t in tools if t != REF]
    header = ["step / metric"] + tools + [f"{t}/{REF}" for t in others if REF in tools]
    table_rows = []
    for title, step, ms in metrics:
        table_rows.append([f"**{title}**"] + [""] * (len(header) - 1))
        for label, metric, unit in ms:
            vals = {t: val(t, step, metric) for t in tools}
            row = [label]
            for t in tools:
                if (t, step) in by:
                    r = by[(t, step)]
                    row.append(fmt(vals[t], unit) if r["status"] == "ok" else r["status"])
                else:
                    row.append("skipped" if meta.get(f"version_{t}", "").startswith("skipped") else "-")
            if REF in tools:
                ref = vals[REF]
                for t in others:
                    v = vals[t]
                    row.append("-" if v is None or not ref else f"{v / ref:.2f}x")
            table_rows.append(row)
    verify_row = ["restore verified"] + [by[(t, "restore")]["note"] if (t, "restore") in by else "-" for t in tools]
    verify_row += [""] * (len(header) - len(verify_row))
    table_rows.append(verify_row)

    L = []
    L.append("# Backup benchmark: " + " vs ".join(tools or ["(no tool)"]))
    L.append("")
    L.append(f"Generated by `bench/run.sh {meta.get('args', '')}`".rstrip() + f" on {meta.get('date', '?')}.")
    L.append("")
    abnormal = [c for c in checks if c[-1] == "**abnormal**"]
    if abnormal:
        L.append("**Not a result**: " + ", ".join(f"{c[0]}'s {c[1]} ({c[2]}, {c[5]} against its median)"
                                                 for c in abnormal)
                 + f" ran more than {ABNORMAL:.0%} off its earlier runs; ratios against it are no result.")
        L.append("")
    L.append("## Setup")
    L.append("")
    L.append(f"- machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, {meta.get('mem', '?')} RAM, "
             f"kernel {meta.get('kernel', '?')}, work dir on {meta.get('fs', '?')}")
    for t in ("strata", "restic", "borg"):
        if meta.get(f"version_{t}"):
            settings = meta.get(f"settings_{t}", "")
            L.append(f"- {t}: {meta[f'version_{t}']}" + (f" - {settings}" if settings else ""))
    if dataset:
        L.append(f"- dataset (`bench/gen_dataset.py --size-mib {dataset.get('size_mib')} --seed {dataset.get('seed')}`): "
                 f"{dataset['total_bytes'] / MIB:.1f} MiB in {dataset['total_files']} files: "
                 f"{dataset['table_bytes'] / MIB:.1f} MiB of 8 KiB-page table files ({dataset['table_files']} files, "
                 f"largest table {dataset['largest_table_mib']} MiB), {dataset['small_files']} small text files "
                 f"({dataset['small_bytes'] / MIB:.1f} MiB), {dataset['random_files']} incompressible files "
                 f"({dataset['random_bytes'] / MIB:.1f} MiB)")
    if meta.get("zstd_ratio"):
        L.append(f"- whole dataset as one tar stream through `zstd -3`: {meta['zstd_ratio']}x smaller "
                 f"(upper bound for per-chunk compression)")
    if mut:
        L.append(f"- mutation between the backups (`--mutate --seed {mut['seed']}`): {mut['changed_pages']} of "
                 f"{mut['table_pages']} table pages rewritten in place ({mut['changed_bytes'] / MIB:.1f} MiB in "
                 f"{mut['changed_files']} files; half scattered, half in {mut['clustered_runs']} runs of 1-8 pages), "
                 f"{mut['appended_pages']} pages appended ({mut['appended_bytes'] / MIB:.1f} MiB), "
                 f"{mut['small_added']} small files added, {mut['small_deleted']} deleted. "
                 f"Changed + appended bytes: {(mut['changed_bytes'] + mut['appended_bytes'] + mut['small_added_bytes']) / MIB:.1f} MiB.")
    for note in meta.get("notes", "").split("|"):
        if note:
            L.append(f"- NOTE: {note}")
    L.append("")
    L.append("## Method")
    L.append("")
    L.append("- Order: generate dataset; first backup with every tool; mutate the dataset once; second backup with "
             "every tool; full restore of the latest snapshot with every tool into an empty directory. All tools "
             "see byte-identical data.")
    L.append("- Each step runs once. The page cache is *not* dropped (that needs root and is unsafe on shared "
             "machines): the dataset was just written, so every tool reads it from a warm page cache under the same "
             "conditions. `sync` runs after every step (untimed) so one tool's dirty pages are not flushed during "
             "the next tool's step.")
    L.append("- wall, CPU (user+sys) and peak RSS come from `/usr/bin/time`; repo size is `du -sb` of the repository "
             "after the step; repo growth = size after second backup - size after first. Local cache/state is the "
             "client-side cache (restic --cache-dir, borg BORG_BASE_DIR, strata state dir), not in repo size.")
    L.append("- A restore is verified by hashing every file (SHA-256) of source and restored tree and comparing "
             "the sets of files and directories; verification is not timed.")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append(md_table(header, table_rows))
    L.append("")
    scale = [r for r in rows if r["step"].startswith("scale-")]
    if scale:
        L.append("## memory vs size")
        L.append("")
        L.append("First backup only, into an empty repository, of freshly generated datasets of 0.25x, 1x and 4x "
                 "the size.")
        L.append("")
        srows = []
        base_rss: dict[str, float] = {}
        for r in scale:
            d = num(r["data_bytes"])
            ok = r["status"] == "ok"
            rss = num(r["rss_kib"]) / 1024 if ok and num(r["rss_kib"]) is not None else None
            if rss and r["tool"] not in base_rss:
                base_rss[r["tool"]] = rss
            cpu = (num(r["user_s"]) or 0) + (num(r["sys_s"]) or 0) if ok else None
            srows.append([r["tool"], fmt(d / MIB if d else None, " MiB"),
                          fmt(num(r["wall_s"]) if ok else None, " s"), fmt(cpu, " s"), fmt(rss, " MiB"),
                          f"{rss / base_rss[r['tool']]:.2f}x" if rss and r["tool"] in base_rss else "-",
                          fmt(num(r["repo_bytes"]) / MIB if ok and num(r["repo_bytes"]) is not None else None, " MiB"),
                          r["status"]])
        L.append(md_table(["tool", "dataset", "wall", "CPU", "peak RSS", "RSS vs smallest run", "repo", "status"], srows))
        L.append("")
    elif meta.get("scaling") == "skipped":
        L.append("## memory vs size")
        L.append("")
        L.append(f"Skipped: {meta.get('scaling_note', '')}")
        L.append("")
    if checks:
        L.append("## The peers against their earlier runs")
        L.append("")
        L.append(f"Each peer's wall time against the median of its earlier runs on the same dataset "
                 f"(`{history_path}`); more than {ABNORMAL:.0%} off is abnormal.")
        L.append("")
        L.append(md_table(["tool", "step", "this run", "median before", "runs before", "off", "verdict"], checks))
        L.append("")
    fails = [r for r in rows if r["status"] not in ("ok",)]
    if fails:
        L.append("## Failures")
        L.append("")
        for r in fails:
            L.append(f"- {r['tool']} {r['step']}: {r['status']} {r['note']}")
        L.append("")
    text = "\n".join(L)
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
    with open(out_md, "w") as f:
        f.write(text)
    print(text)
    if history_path:
        append_history(history_path, rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
