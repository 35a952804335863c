#!/usr/bin/env bash
# bench/run.sh - one-command backup benchmark: strata vs restic vs borg.
#
#   bench/run.sh [--size-mib N] [--tools strata,restic,borg] [--seed S] [--scaling]
#
# What it measures, and why:
#   On one generated, database-like dataset (bench/gen_dataset.py: 8 KiB-page
#   table files, thousands of small files, some incompressible files) every
#   tool does: init, first (full) backup, then - after the dataset is mutated
#   once like a database would between two backups (~1% of pages rewritten in
#   place, appends, small files added/deleted) - a second backup, and finally
#   a full restore of the latest snapshot into an empty directory, which is
#   verified by hashing every file (verification is not timed). A restore is timed
#   until its files are on disk: strata's returns after a syncfs, restic's and borg's
#   are followed by `sync -f` of the target.
#   For each step: wall time, CPU time (user+sys) and peak RSS from
#   /usr/bin/time, and the repository size (du -sb) after each backup, so the
#   second backup's repository growth shows how well each tool deduplicates
#   in-place page changes.  Settings are comparable: zstd level 3 (restic
#   "auto" = its default zstd level), encryption on, same password.
#   The page cache is not dropped (needs root, unsafe on shared machines):
#   all tools read the dataset from a warm cache under the same conditions,
#   each step runs once, and `sync` (untimed) follows every step.
#   --scaling additionally runs only strata's first backup at 0.25x, 1x and 4x
#   of --size-mib and reports peak RSS for each ("memory vs size").
#
# Output: a table on stdout and bench/results/latest.md.  Raw data and logs
# stay in the work dir (BENCH_DIR, default /tmp/strata-bench).
#
# Environment:
#   BENCH_DIR        work dir (default /tmp/strata-bench); data, repos, logs
#   BENCH_PASSWORD   repository password for all tools (default: a fixed test password)
#   STRATA_BIN       use this strata binary instead of building it with cargo
#   BENCH_RESULTS    report path (default bench/results/latest.md)
#   SCALING_TOOLS    tools for --scaling (default strata)
#   BENCH_HISTORY    the peers' earlier wall times (default bench/results/peer-history.tsv):
#                    the report flags a peer more than 30% off its median there, then
#                    adds this run's
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
ORIG_ARGS="$*"

SIZE_MIB=1024
TOOLS_ARG=strata,restic,borg
SEED=1
SCALING=0
W=${BENCH_DIR:-/tmp/strata-bench}
RESULTS_MD=${BENCH_RESULTS:-$SCRIPT_DIR/results/latest.md}
SCALING_TOOLS=${SCALING_TOOLS:-strata}
export BENCH_PASSWORD=${BENCH_PASSWORD:-strata-bench-password}

say()  { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'run.sh: WARNING: %s\n' "$*" >&2; }
die()  { printf 'run.sh: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
trap 'echo "run.sh: unexpected failure at line $LINENO (exit $?)" >&2' ERR

while [[ $# -gt 0 ]]; do
  case $1 in
    --size-mib)   [[ $# -ge 2 ]] || die "--size-mib needs a value"; SIZE_MIB=$2; shift 2 ;;
    --size-mib=*) SIZE_MIB=${1#*=}; shift ;;
    --tools)      [[ $# -ge 2 ]] || die "--tools needs a value"; TOOLS_ARG=$2; shift 2 ;;
    --tools=*)    TOOLS_ARG=${1#*=}; shift ;;
    --seed)       [[ $# -ge 2 ]] || die "--seed needs a value"; SEED=$2; shift 2 ;;
    --seed=*)     SEED=${1#*=}; shift ;;
    --scaling)    SCALING=1; shift ;;
    -h|--help)    usage; exit 0 ;;
    *)            die "unknown argument '$1' (see --help)" ;;
  esac
done
if ! [[ $SIZE_MIB =~ ^[0-9]+$ ]] || (( SIZE_MIB < 8 )); then die "--size-mib must be an integer >= 8, got '$SIZE_MIB'"; fi
SIZE_MIB=$((10#$SIZE_MIB))
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, got '$SEED'"
(( SCALING == 0 || SIZE_MIB >= 32 )) || die "--scaling needs --size-mib >= 32 (0.25x must be >= 8 MiB)"
TOOLS=()
IFS=, read -r -a _tools <<<"$TOOLS_ARG"
for t in "${_tools[@]}"; do
  case $t in
    strata|restic|borg) [[ " ${TOOLS[*]} " == *" $t "* ]] || TOOLS+=("$t") ;;
    "") ;;
    *) die "unknown tool '$t' in --tools (known: strata, restic, borg)" ;;
  esac
done
(( ${#TOOLS[@]} > 0 )) || die "--tools is empty"
case $W in /|"") die "BENCH_DIR must not be '$W'" ;; esac
mkdir -p "$W"
W=$(cd "$W" && pwd)

DATA=$W/data            # the dataset all tools back up
LOGS=$W/logs
RESULTS_TSV=$W/results.tsv
META=$W/meta.tsv
NOTES=()                # free-text notes for the report
FAILED=0
declare -A SKIP=()      # tool -> reason it is unavailable (e.g. strata did not build)
declare -A DEAD=()      # tool -> step that failed (its later steps are skipped)
REPO_SUFFIX=

has_tool() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }
# needs_tool: the tool is used by the comparison or by --scaling
needs_tool() { has_tool "$1" || [[ $SCALING == 1 && ",$SCALING_TOOLS," == *",$1,"* ]]; }
alive()    { has_tool "$1" && [[ -z ${SKIP[$1]:-} && -z ${DEAD[$1]:-} ]]; }
meta()     { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\t\n' '  ')" >>"$META"; }
bytes_of() { if [[ -e $1 ]]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# ---------------------------------------------------------------- prerequisites
APT_UPDATED=0
apt_install() {
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root (or sudo) to install: $*"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null || die "apt-get not found; install manually: $*"
  if (( APT_UPDATED == 0 )); then
    info "apt-get update"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  info "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

say "prerequisites"
command -v python3 >/dev/null || die "python3 is required"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "python3 >= 3.9 is required"
[[ -x /usr/bin/time ]] || apt_install time
missing=()
if needs_tool restic && ! command -v restic >/dev/null; then missing+=(restic); fi
if needs_tool borg && ! command -v borg >/dev/null; then missing+=(borgbackup); fi
(( ${#missing[@]} == 0 )) || apt_install "${missing[@]}"

rm -rf "$LOGS" "$RESULTS_TSV" "$META"
mkdir -p "$LOGS"

if needs_tool borg; then
  BORG_VERSION=$(borg --version 2>&1 | awk '{print $2}')
  case $BORG_VERSION in
    1.*) BORG_ENC=repokey-blake2 ;;
    *) die "unsupported borg version '$BORG_VERSION' (need borg 1.x; borg 2 has a different CLI)" ;;
  esac
fi

STRATA_GLOBAL=()
if needs_tool strata; then
  if [[ -n ${STRATA_BIN:-} ]]; then
    info "using STRATA_BIN=$STRATA_BIN (not building)"
  elif ! command -v cargo >/dev/null; then
    SKIP[strata]="cargo not found, could not build strata"
  else
    info "building strata: cargo build --release -p strata (log: $LOGS/strata-build.log)"
    if (cd "$REPO_ROOT" && cargo build --release -p strata) >"$LOGS/strata-build.log" 2>&1; then
      STRATA_BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/strata
    else
      tail -n 15 "$LOGS/strata-build.log" | sed 's/^/    | /'
      SKIP[strata]="cargo build --release -p strata failed (see $LOGS/strata-build.log)"
    fi
  fi
  if [[ -z ${SKIP[strata]:-} ]]; then
    if [[ ! -x ${STRATA_BIN:-} ]]; then
      SKIP[strata]="strata binary not found at '${STRATA_BIN:-}'"
    elif ! "$STRATA_BIN" --help >"$LOGS/strata-help.txt" 2>&1; then
      SKIP[strata]="'$STRATA_BIN --help' failed (see $LOGS/strata-help.txt)"
    elif grep -q -- '--state-dir' "$LOGS/strata-help.txt"; then
      STRATA_GLOBAL=(--state-dir "$W/strata-state")
    else
      export STRATA_STATE_DIR=$W/strata-state
    fi
  fi
  if [[ -n ${SKIP[strata]:-} ]]; then
    warn "skipping strata: ${SKIP[strata]}"
    NOTES+=("strata skipped: ${SKIP[strata]}")
  fi
fi

# free space: dataset + repos + one restore at a time (+ 4x dataset for --scaling)
need_mib=$(( SIZE_MIB * (3 + ${#TOOLS[@]}) + SCALING * SIZE_MIB * 6 ))
free_mib=$(( $(df -Pk "$W" | awk 'NR==2 {print $4}') / 1024 ))
(( free_mib >= need_mib )) || warn "only $free_mib MiB free in $W, the run may need about $need_mib MiB"

# ---------------------------------------------------------------- per-tool commands
export RESTIC_PASSWORD=$BENCH_PASSWORD BORG_PASSPHRASE=$BENCH_PASSWORD STRATA_PASSWORD=$BENCH_PASSWORD
export BORG_BASE_DIR=$W/borg-base BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
       BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

repo_of()  { echo "$W/repo-$1$REPO_SUFFIX"; }
cache_of() {
  case $1 in
    restic) echo "$W/restic-cache" ;;
    borg)   echo "$BORG_BASE_DIR" ;;
    strata) echo "$W/strata-state" ;;
  esac
}
# tool_cmd TOOL KIND [ARG]: sets CMD (array) and CWD for KIND = init, backup1,
# backup2 (ARG = directory to back up) or restore (ARG = empty target dir).
tool_cmd() {
  local tool=$1 kind=$2 arg=${3:-} repo
  repo=$(repo_of "$tool")
  CWD=$W
  case $tool/$kind in
    restic/init)    CMD=(restic -r "$repo" --cache-dir "$(cache_of restic)" init --repository-version 2) ;;
    restic/backup*) CMD=(restic -r "$repo" --cache-dir "$(cache_of restic)" backup --compression auto "$arg") ;;
    # Restores end with their files on disk, as strata's does (it returns after a
    # syncfs): the others' are followed by `sync -f` of the target's file system.
    restic/restore) CMD=(sh -c 'restic -r "$1" --cache-dir "$2" restore latest --target "$3" && sync -f "$3"'
                         sh "$repo" "$(cache_of restic)" "$arg") ;;
    borg/init)      CMD=(borg init --encryption="$BORG_ENC" "$repo") ;;
    borg/backup*)   CMD=(borg create --compression "zstd,3" "$repo::b${kind#backup}" .); CWD=$arg ;;
    borg/restore)   CMD=(sh -c 'borg extract "$1::b2" && sync -f .' sh "$repo"); CWD=$arg ;;
    strata/init)    CMD=("$STRATA_BIN" --repo "$repo" "${STRATA_GLOBAL[@]}" init) ;;
    strata/backup*) CMD=("$STRATA_BIN" --repo "$repo" "${STRATA_GLOBAL[@]}" backup "$arg") ;;
    strata/restore) CMD=("$STRATA_BIN" --repo "$repo" "${STRATA_GLOBAL[@]}" restore latest --to "$arg") ;;
    *) die "internal: no command for $tool/$kind" ;;
  esac
}

# record TOOL STEP STATUS WALL USER SYS RSS_KIB REPO_BYTES CACHE_BYTES DATA_BYTES NOTE
record() { local IFS=$'\t'; echo "$*" >>"$RESULTS_TSV"; }

# measure TOOL STEP KIND DATA_BYTES [ARG]: run one step (KIND, see tool_cmd)
# under /usr/bin/time and append a row to results.tsv.  Returns non-zero (and
# marks the tool dead, so its later steps are skipped) if the step failed.
measure() {
  local tool=$1 step=$2 kind=$3 data_bytes=$4 arg=${5:-}
  local log=$LOGS/$tool-$step.log tf=$LOGS/$tool-$step.time rc=0
  tool_cmd "$tool" "$kind" "$arg"
  printf '    %-7s %-9s ' "$tool" "$step"
  printf '%q ' "${CMD[@]}" >"$log"; printf '\n(cwd %s)\n\n' "$CWD" >>"$log"
  ( cd "$CWD" && exec /usr/bin/time -f '%e %U %S %M' -o "$tf" "${CMD[@]}" ) >>"$log" 2>&1 </dev/null || rc=$?
  sync
  if (( rc != 0 )); then
    echo "FAILED (exit $rc)"
    tail -n 15 "$log" | sed 's/^/      | /'
    record "$tool" "$step" FAILED "" "" "" "" "" "" "" "exit $rc, log: $log"
    DEAD[$tool]="$step failed"
    FAILED=1
    return 1
  fi
  local wall user sys rss repo_b cache_b
  read -r wall user sys rss < <(tail -n 1 "$tf")
  repo_b=$(bytes_of "$(repo_of "$tool")")
  cache_b=$(bytes_of "$(cache_of "$tool")")
  record "$tool" "$step" ok "$wall" "$user" "$sys" "$rss" "$repo_b" "$cache_b" "$data_bytes" ""
  awk -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v b="$repo_b" 'BEGIN {
    printf "wall %7.1f s   cpu %7.1f s   peak rss %6.0f MiB   repo %8.1f MiB\n", w, u + s, r / 1024, b / 1048576 }'
}

fresh_tool_state() {
  rm -rf "$(repo_of "$1")" "$(cache_of "$1")"
}

# ---------------------------------------------------------------- metadata
{
  printf 'tool\tstep\tstatus\twall_s\tuser_s\tsys_s\trss_kib\trepo_bytes\tcache_bytes\tdata_bytes\tnote\n'
} >"$RESULTS_TSV"
: >"$META"
meta args "$ORIG_ARGS"
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta tools "$(IFS=,; echo "${TOOLS[*]}")"
meta cores "$(nproc)"
meta mem "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
meta kernel "$(uname -r)"
meta cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
meta fs "$(df -PT "$W" | awk 'NR==2 {print $2}')"
if needs_tool restic; then
  meta version_restic "$(restic version | awk '{print $1, $2}')"
  meta settings_restic "repo format v2, --compression auto (zstd default level), AES-256 + Poly1305, cache in work dir"
fi
if needs_tool borg; then
  meta version_borg "borg $BORG_VERSION"
  meta settings_borg "--encryption=$BORG_ENC, --compression zstd,3, default chunker, BORG_BASE_DIR in work dir"
fi
if needs_tool strata; then
  if [[ -z ${SKIP[strata]:-} ]]; then
    meta version_strata "$("$STRATA_BIN" --version 2>/dev/null | head -n1 || echo unknown) (git $(git -C "$REPO_ROOT" rev-parse --short --verify -q HEAD 2>/dev/null || echo none)$(git -C "$REPO_ROOT" diff --quiet HEAD 2>/dev/null || echo ', dirty'))"
    meta settings_strata "defaults (zstd 3, encrypted), state dir in work dir ($( ((${#STRATA_GLOBAL[@]})) && echo --state-dir || echo STRATA_STATE_DIR))"
  else
    meta version_strata "skipped: ${SKIP[strata]}"
  fi
fi

# ---------------------------------------------------------------- dataset
say "generating ${SIZE_MIB} MiB dataset (seed $SEED) in $DATA"
rm -rf "$DATA"
python3 "$SCRIPT_DIR/gen_dataset.py" "$DATA" --size-mib "$SIZE_MIB" --seed "$SEED" --json >"$W/dataset.json"
meta dataset_json "$(cat "$W/dataset.json")"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("    %.1f MiB in %d files (%.1f s)" % (s["total_bytes"]/2**20, s["total_files"], s["seconds"]))' "$W/dataset.json"
DATA_BYTES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_bytes"])' "$W/dataset.json")
if command -v zstd >/dev/null; then
  zbytes=$(tar -C "$DATA" -cf - . | zstd -3 -T1 -q -c | wc -c)
  ratio=$(python3 -c "print(f'{$DATA_BYTES/$zbytes:.2f}')")
  meta zstd_ratio "$ratio"
  info "tar | zstd -3 ratio of the dataset: ${ratio}x"
fi
sync

# ---------------------------------------------------------------- first backups
say "init + first backup"
for t in "${TOOLS[@]}"; do
  alive "$t" || continue
  fresh_tool_state "$t"
  measure "$t" init init 0 || continue
  measure "$t" backup1 backup1 "$DATA_BYTES" "$DATA" || continue
done

# ---------------------------------------------------------------- mutate + second backups
say "mutating the dataset (seed $((SEED + 1)))"
python3 "$SCRIPT_DIR/gen_dataset.py" "$DATA" --mutate --seed $((SEED + 1)) --json >"$W/mutate.json"
meta mutate_json "$(cat "$W/mutate.json")"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("    %d pages rewritten (%.1f MiB), %d appended, %d small files added, %d deleted" % (s["changed_pages"], s["changed_bytes"]/2**20, s["appended_pages"], s["small_added"], s["small_deleted"]))' "$W/mutate.json"
DATA_BYTES2=$(find "$DATA" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
sync

say "second backup"
for t in "${TOOLS[@]}"; do
  alive "$t" || continue
  measure "$t" backup2 backup2 "$DATA_BYTES2" "$DATA" || continue
  if [[ $t == strata ]]; then  # snapshot list for the log; not measured, not fatal
    "$STRATA_BIN" --repo "$(repo_of strata)" "${STRATA_GLOBAL[@]}" list --json >"$LOGS/strata-list.json" 2>&1 \
      || warn "strata list --json failed (see $LOGS/strata-list.json)"
  fi
done

# ---------------------------------------------------------------- restores
say "restore latest + verify"
info "hashing the source tree"
python3 "$SCRIPT_DIR/treehash.py" manifest "$DATA" >"$W/manifest.json"
for t in "${TOOLS[@]}"; do
  alive "$t" || continue
  out=$W/restore-$t
  rm -rf "$out"; mkdir -p "$out"
  measure "$t" restore restore "$DATA_BYTES2" "$out" || continue
  case $t in
    restic) root=$out/${DATA#/} ;;   # restic restores absolute paths below --target
    *)      root=$out ;;
  esac
  if vout=$(python3 "$SCRIPT_DIR/treehash.py" verify "$W/manifest.json" "$root" 2>&1); then
    info "$vout"
    note=$(printf '%s' "$vout" | tail -n 1 |
           sed 's/^verify: OK: .*metadata: \([0-9]*\) entries with other permissions, \([0-9]*\) files with other mtime.*/OK (\1 permission, \2 mtime differences)/')
    rm -rf "$out"
  else
    printf '%s\n' "$vout" | sed 's/^/      | /'
    warn "$t restore does not match the source (restored tree kept in $out)"
    note="FAILED verification (tree kept in $out)"
    FAILED=1
  fi
  # attach the verification result to the restore row
  python3 - "$RESULTS_TSV" "$t" "$note" <<'EOF'
import sys
path, tool, note = sys.argv[1:]
lines = open(path).read().splitlines()
for i, l in enumerate(lines):
    f = l.split("\t")
    if f[0] == tool and f[1] == "restore":
        f[10] = note.replace("\t", " ")
        lines[i] = "\t".join(f)
open(path, "w").write("\n".join(lines) + "\n")
EOF
done

# ---------------------------------------------------------------- memory vs size
if (( SCALING )); then
  say "memory vs size: first backup at 0.25x, 1x, 4x of $SIZE_MIB MiB (tools: $SCALING_TOOLS)"
  IFS=, read -r -a stools <<<"$SCALING_TOOLS"
  REPO_SUFFIX=-scale      # separate repos; the comparison repos stay for inspection
  for t in "${stools[@]}"; do
    case $t in strata|restic|borg) ;; *) die "unknown tool '$t' in SCALING_TOOLS" ;; esac
    if [[ -n ${SKIP[$t]:-} ]]; then
      warn "memory vs size: skipping $t: ${SKIP[$t]}"
      meta scaling skipped
      meta scaling_note "$t: ${SKIP[$t]}"
      continue
    fi
    for q in 1 4 16; do   # in quarters: 0.25x, 1x, 4x
      size=$(( SIZE_MIB * q / 4 ))
      sdata=$W/scale-data
      rm -rf "$sdata"
      info "generating $size MiB"
      python3 "$SCRIPT_DIR/gen_dataset.py" "$sdata" --size-mib "$size" --seed "$SEED" --json >"$W/scale-dataset.json"
      sbytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_bytes"])' "$W/scale-dataset.json")
      sync
      fresh_tool_state "$t"
      if measure "$t" "scaleinit-${size}MiB" init 0; then
        measure "$t" "scale-${size}MiB" backup1 "$sbytes" "$sdata" || true
      fi
      unset "DEAD[$t]"
      fresh_tool_state "$t"
      rm -rf "$sdata"
    done
  done
  REPO_SUFFIX=
fi

# ---------------------------------------------------------------- report
meta notes "$(IFS='|'; echo "${NOTES[*]:-}")"
say "report ($RESULTS_MD)"
echo
python3 "$SCRIPT_DIR/report.py" "$W" "$RESULTS_MD" --history "${BENCH_HISTORY:-$SCRIPT_DIR/results/peer-history.tsv}"
echo
info "raw results: $RESULTS_TSV, logs: $LOGS"
if (( FAILED )); then
  warn "some steps failed; see the Failures section and the logs"
  exit 1
fi
