#!/usr/bin/env bash
# bench/million.sh - a node of a million small files: strata vs restic.
#
#   bench/million.sh [--dirs N] [--files N] [--runs N] [--tools strata,restic]
#                    [--steps backup1,backup2,ls,restore,restore_durable,verify] [--cold]
#
# What it measures, and why:
#   The metadata engine at the size of real clusters (issue 33, "A million files"):
#   a tree of --dirs directories of --files files each (default 1,000 x 1,000), every
#   file 60-800 random bytes, so the cost is in the manifests, the files cache and
#   the index, not in the data. For each tool and run: init (untimed), first backup,
#   unchanged second backup, `ls` of one directory of the latest backup, full restore
#   into an empty directory, and a structural check (`strata verify`, `restic check`).
#   `restore_durable` (not a default step) times a restore until its files are on disk:
#   strata's restore as it is (it returns after a syncfs), restic's followed by
#   `sync -f` of the target.
#   Each step runs under /usr/bin/time -v: wall time and peak RSS ("Maximum resident
#   set size"). Every run starts from a fresh repository, cache and state directory;
#   the table reports the median of the runs with every run's value beside it.
#   By default the page cache is not dropped (needs root, unsafe on a shared machine):
#   both tools read the same warm tree. With --cold (root) it is dropped (`sync`, then
#   `echo 3 > /proc/sys/vm/drop_caches`) before every timed step of every tool: a first
#   backup then reads a cold tree, as it does on a database host. --steps times only
#   the steps named (a later step needs the earlier ones' repository). Settings: encryption on, same password, restic's default
#   compression (auto), strata's defaults.
#
# Output: a table on stdout and bench/results/million.md; logs and raw rows in
# BENCH_DIR (default /tmp/strata-million).
#
# Environment:
#   BENCH_DIR     work dir (default /tmp/strata-million)
#   BENCH_RESTORE where restores go (default BENCH_DIR/restore); a tmpfs such as
#                 /dev/shm/million-restore keeps deleting a million restored files
#                 between runs from taking minutes on a busy disk
#   STRATA_BIN    the strata binary (default: $CARGO_TARGET_DIR or target, release)
#   BENCH_RESULTS report path (default bench/results/million.md)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
DIRS=1000
FILES=1000
RUNS=3
TOOLS_ARG=strata,restic
STEPS_ARG=backup1,backup2,ls,restore,verify
COLD=0
W=${BENCH_DIR:-/tmp/strata-million}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/million.md}
STRATA_BIN=${STRATA_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/strata}
export RESTIC_PASSWORD=strata-bench-password STRATA_PASSWORD=strata-bench-password

die() { printf 'million.sh: ERROR: %s\n' "$*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --dirs)  DIRS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --runs)  RUNS=$2; shift 2 ;;
    --tools) TOOLS_ARG=$2; shift 2 ;;
    --steps) STEPS_ARG=$2; shift 2 ;;
    --cold)  COLD=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
IFS=, read -r -a TOOLS <<<"$TOOLS_ARG"
IFS=, read -r -a STEPS <<<"$STEPS_ARG"
if [[ $COLD == 1 && $(id -u) != 0 ]]; then die "--cold drops the page cache, which needs root"; fi
for t in "${TOOLS[@]}"; do
  case $t in
    strata) [[ -x $STRATA_BIN ]] || die "no strata binary at $STRATA_BIN (cargo build --release -p strata)" ;;
    restic) command -v restic >/dev/null || die "restic is not installed (apt-get install restic)" ;;
    *) die "unknown tool '$t'" ;;
  esac
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time is needed (apt-get install time)"

DATA=$W/data
RESTORE=${BENCH_RESTORE:-$W/restore}
ROWS=$W/rows.tsv
mkdir -p "$W/logs"
: >"$ROWS"

# The tree: generated once, reused by every run (its mtimes are old enough for any
# files cache to trust them).
if [[ ! -f $W/data.done || $(cat "$W/data.done") != "$DIRS x $FILES" ]]; then
  echo "==> generating $DIRS x $FILES files in $DATA"
  rm -rf "$DATA"
  python3 - "$DATA" "$DIRS" "$FILES" <<'EOF'
import os, random, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(33)
for d in range(dirs):
    path = os.path.join(root, f"d{d:04}")
    os.makedirs(path)
    for f in range(files):
        with open(os.path.join(path, f"f{f:04}"), "wb") as out:
            out.write(rng.randbytes(rng.randint(60, 800)))
old = 1_700_000_000
for d in range(dirs):
    path = os.path.join(root, f"d{d:04}")
    for f in range(files):
        os.utime(os.path.join(path, f"f{f:04}"), (old, old))
EOF
  echo "$DIRS x $FILES" >"$W/data.done"
  sleep 3
fi
LS_DIR=d$(printf '%04d' $((DIRS / 2)))

# step_cmd TOOL STEP: sets CMD for one step.
step_cmd() {
  local repo=$W/repo-$1
  case $1/$2 in
    strata/init)    CMD=("$STRATA_BIN" --repo "$repo" --state-dir "$W/state-strata" init) ;;
    strata/backup*) CMD=("$STRATA_BIN" --repo "$repo" --state-dir "$W/state-strata" backup "$DATA") ;;
    strata/ls)      CMD=("$STRATA_BIN" --repo "$repo" --state-dir "$W/state-strata" ls latest "$LS_DIR") ;;
    strata/restore) CMD=("$STRATA_BIN" --repo "$repo" --state-dir "$W/state-strata" restore latest --to "$RESTORE") ;;
    strata/verify)  CMD=("$STRATA_BIN" --repo "$repo" --state-dir "$W/state-strata" verify) ;;
    restic/init)    CMD=(restic -r "$repo" --cache-dir "$W/state-restic" init --repository-version 2) ;;
    restic/backup*) CMD=(restic -r "$repo" --cache-dir "$W/state-restic" backup "$DATA") ;;
    restic/ls)      CMD=(restic -r "$repo" --cache-dir "$W/state-restic" ls latest "$DATA/$LS_DIR") ;;
    restic/restore) CMD=(restic -r "$repo" --cache-dir "$W/state-restic" restore latest --target "$RESTORE") ;;
    # The restore and then the files on disk (`sync -f`: one syncfs of the target's file
    # system), as strata's restore is when it reports: the durable restores compared.
    restic/restore_durable)
      CMD=(sh -c 'restic -r "$1" --cache-dir "$2" restore latest --target "$3" && sync -f "$3"'
           sh "$repo" "$W/state-restic" "$RESTORE") ;;
    strata/restore_durable) step_cmd strata restore ;;
    restic/verify)  CMD=(restic -r "$repo" --cache-dir "$W/state-restic" check) ;;
  esac
}

# measure TOOL RUN STEP: one timed step; appends "tool step run wall_s rss_kib".
measure() {
  local tool=$1 run=$2 step=$3 log=$W/logs/$1-$2-$3.log
  step_cmd "$tool" "$step"
  # Nothing dirty when a step starts: no tool pays for the writeback of what ran before
  # it (a million restored files just removed), which strata's restore, durable when it
  # reports (syncfs), would otherwise wait for.
  sync
  if [[ $COLD == 1 ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
  if ! /usr/bin/time -v -o "$log.time" "${CMD[@]}" >"$log" 2>&1 </dev/null; then
    tail -n 5 "$log" >&2
    die "$tool $step (run $run) failed: $log"
  fi
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$log.time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log.time")
  printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$run" "$wall" "$rss" >>"$ROWS"
  printf '    %-7s run %s %-8s %8.1f s %8.0f MiB\n' "$tool" "$run" "$step" "$wall" "$((rss / 1024))"
}

for run in $(seq 1 "$RUNS"); do
  for tool in "${TOOLS[@]}"; do
    echo "==> $tool, run $run"
    rm -rf "$W/repo-$tool" "$W/state-$tool" "$RESTORE"
    step_cmd "$tool" init
    "${CMD[@]}" >"$W/logs/$tool-$run-init.log" 2>&1
    for step in "${STEPS[@]}"; do
      measure "$tool" "$run" "$step"
      rm -rf "$RESTORE"
    done
  done
done

# The report: median of the runs, each run beside it.
mkdir -p "$(dirname "$RESULTS_MD")"
BENCH_COLD=$COLD python3 - "$ROWS" "$RESULTS_MD" "$DIRS" "$FILES" "$RUNS" <<'EOF'
import collections, statistics, sys, datetime, os
rows, out, dirs, files, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
data = collections.defaultdict(list)
for line in open(rows):
    tool, step, run, wall, rss = line.split("\t")
    data[(tool, step)].append((float(wall), int(rss) / 1024))
tools = sorted({t for t, _ in data}, key=lambda t: t != "strata")
steps = ["backup1", "backup2", "ls", "restore", "restore_durable", "verify"]
names = {"backup1": "first backup", "backup2": "unchanged second backup", "ls": "`ls` of one directory",
         "restore": "restore", "restore_durable": "restore, files on disk (restic: + `sync -f`)",
         "verify": "verify (`restic check`)"}
cold = os.environ.get("BENCH_COLD") == "1"
lines = [f"{dirs} directories x {files} files of 60-800 bytes, page cache {'dropped before every step' if cold else 'warm'}, median of {runs} runs "
         f"(every run in brackets), {os.cpu_count()} cores, "
         f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC", "",
         "| step | " + " | ".join(f"{t} time | {t} peak RSS" for t in tools) + " | time strata/restic |",
         "|---|" + "---|---|" * len(tools) + "---|"]
for step in steps:
    cells, med = [], {}
    if not any((t, step) in data for t in tools):
        continue
    for t in tools:
        runs_ = data.get((t, step), [])
        if not runs_:
            cells += ["-", "-"]; continue
        w = statistics.median(r[0] for r in runs_); m = statistics.median(r[1] for r in runs_)
        med[t] = w
        cells.append(f"{w:.1f} s ({', '.join(f'{r[0]:.1f}' for r in runs_)})")
        cells.append(f"{m:.0f} MiB ({', '.join(f'{r[1]:.0f}' for r in runs_)})")
    ratio = f"{med['strata'] / med['restic']:.2f}x" if "strata" in med and med.get("restic") else "-"
    lines.append(f"| {names[step]} | " + " | ".join(cells) + f" | {ratio} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
