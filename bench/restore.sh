#!/usr/bin/env bash
# bench/restore.sh - strata's restore against restic's and against the floor of copying
# the same files, in one run.
#
#   bench/restore.sh [--size-mib N] [--runs N] [--strata BIN]...
#
# The set is bench/gen_dataset.py's (the one bench/run.sh backs up). Each strata binary
# given (default: target/release/strata) and restic back it up once; then each of --runs
# rounds (default 5) times, in an order that rotates from round to round:
#   strata restore latest --to OUT          (it returns after its syncfs)
#   restic restore latest --target OUT && sync -f OUT
#   cp -a SET OUT && sync -f OUT            (the floor: the same files laid down)
# Before every step the previous output is removed and `sync` run, untimed, so no step
# pays for another's writeback. Sources stay in the page cache for all alike (the set
# and the repositories are read once before the first round). Reports, per command, the
# median wall time with every run, the spread ((max - min) / median), the peak RSS and
# the ratios of the medians against restic and against the floor; restic's medians go
# beside the earlier ones in bench/results/peer-history.tsv (a run whose restic is more
# than 30% off its earlier median is flagged: its ratios are no result).
#
# Environment: BENCH_DIR (work dir, default /tmp/strata-bench-restore).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
size=1024
runs=5
binaries=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --size-mib) size=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --strata) binaries+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--size-mib N] [--runs N] [--strata BIN]..." >&2; exit 2 ;;
  esac
done
[[ ${#binaries[@]} -gt 0 ]] || binaries=("$root/target/release/strata")
command -v restic >/dev/null || { echo "restic is needed (apt-get install restic)" >&2; exit 1; }
W=${BENCH_DIR:-/tmp/strata-bench-restore}
mkdir -p "$W"
export RESTIC_PASSWORD=bench-restore STRATA_PASSWORD=bench-restore
set_dir=$W/set-$size
if [[ ! -d $set_dir ]]; then
  python3 "$here/gen_dataset.py" --size-mib "$size" --seed 1 "$set_dir" >/dev/null
fi
# shellcheck source=bench/measure.sh
. "$here/measure.sh"

# The commands, by name: strata-N for the N-th binary, restic, floor.
names=()
declare -A command_of
for i in "${!binaries[@]}"; do
  bin=${binaries[$i]}
  repo=$W/repo-strata-$i state=$W/state-strata-$i
  rm -rf "$repo" "$state"
  "$bin" --repo "$repo" --state-dir "$state" --quiet init
  "$bin" --repo "$repo" --state-dir "$state" --quiet backup --node-name set "$set_dir"
  names+=("strata-$i")
  command_of[strata-$i]="\"$bin\" --repo \"$repo\" --state-dir \"$state\" --quiet restore latest --to \"\$1\""
done
rm -rf "$W/repo-restic" "$W/restic-cache"
restic -r "$W/repo-restic" --cache-dir "$W/restic-cache" init --repository-version 2 >/dev/null
restic -r "$W/repo-restic" --cache-dir "$W/restic-cache" backup --compression auto "$set_dir" >/dev/null
names+=(restic floor)
command_of[restic]="restic -r \"$W/repo-restic\" --cache-dir \"$W/restic-cache\" restore latest --target \"\$1\" >/dev/null && sync -f \"\$1\""
command_of[floor]="cp -a \"$set_dir\" \"\$1\" && sync -f \"\$1\""
# Everything read once: the set and the repositories come from the page cache for all.
find "$set_dir" "$W"/repo-* -type f -exec cat {} + >/dev/null

out=$W/out
results=$W/results.tsv
: >"$results"
for ((round = 0; round < runs; round++)); do
  n=${#names[@]}
  for ((k = 0; k < n; k++)); do
    name=${names[$(((k + round) % n))]}
    rm -rf "$out"
    sync
    line=$(measure "$name" sh -c "${command_of[$name]}" sh "$out")
    echo "round $((round + 1)): $line"
    read -r _ seconds _ _ _ _ _ _ _ rss _ <<<"$line"
    printf '%s\t%s\t%s\n' "$name" "$seconds" "$rss" >>"$results"
  done
done
rm -rf "$out"

python3 - "$results" "$root/bench/results/peer-history.tsv" "$size" "${binaries[@]}" <<'EOF'
import statistics, subprocess, sys, time
results, history, size, binaries = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
times, rss = {}, {}
for line in open(results):
    name, seconds, peak = line.split("\t")
    times.setdefault(name, []).append(float(seconds))
    rss.setdefault(name, []).append(float(peak))
med = {n: statistics.median(t) for n, t in times.items()}
earlier = []
try:
    for line in open(history):
        cols = line.rstrip("\n").split("\t")
        if cols[1] == "restic" and cols[3] == size and cols[5] == "restore":
            earlier.append(float(cols[6]))
except OSError:
    pass
flag = ""
if earlier:
    m = statistics.median(earlier)
    if abs(med["restic"] - m) > 0.3 * m:
        flag = f" **restic ran {med['restic'] / m:.2f}x its earlier median ({m:.2f} s): no result**"
version = " ".join(subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split()[:2])
with open(history, "a") as h:
    h.write(f"{time.strftime('%Y-%m-%d')} (bench/restore.sh)\trestic\t{version}\t{size}\t1\trestore\t{med['restic']:.2f}\n")
print(f"\n| command ({size} MiB set, {len(times['floor'])} runs) | median | runs | spread | peak RSS | / restic | / floor |")
print("|---|---|---|---|---|---|---|")
for name, t in times.items():
    label = binaries[int(name.split("-")[1])] if name.startswith("strata-") else name
    spread = (max(t) - min(t)) / med[name]
    print(f"| {label} | {med[name]:.2f} s | {', '.join(f'{x:.2f}' for x in t)} | {spread:.0%} "
          f"| {max(rss[name]):.0f} MiB | {med[name] / med['restic']:.2f}x | {med[name] / med['floor']:.2f}x |")
if flag:
    print(flag)
EOF
