#!/usr/bin/env bash
# bench/soak.sh - the concurrency torture (crates/strata-coordinator/tests/torture.rs) as a
# soak: ROUNDS rounds on a local directory and ROUNDS on Azurite, the object storage
# emulator the torture runs on (its conditional writes are atomic, which the locks need;
# the suite's S3 emulator checks conditions without applying them atomically). The rounds
# go in runs of CHUNK, each a fresh repository with a seed of its own, since a run's rounds
# slow down as its repository grows (garbage collection reads every WAL record, the checks
# fetch every acknowledged segment). Prints per run the seed, rounds, seconds, violations
# and the rounds in which garbage collection deleted packs, then the totals per storage.
# Exits 1 when any run failed (a violation, or too little collected: its log says which).
#
#   bench/soak.sh [ROUNDS] [CHUNK]      (default 10000, 100)
#
# SOAK_BACKENDS  "local azurite" (default), or one of them
# SOAK_SEED      the first run's seed (default: from the clock); run i has SOAK_SEED+i
# SOAK_MINUTES   per storage, start no run after this many minutes (default: no limit)
# SOAK_LOGS      where each run's log goes (default /tmp/strata-soak); a violation's log
#                names the file holding the journal of its last two rounds
#
# Replay one run: STRATA_TORTURE_SEED=SEED STRATA_TORTURE_ROUNDS=CHUNK cargo nextest run \
#   -p strata-coordinator --test torture TEST --no-capture
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${1:-10000}
CHUNK=${2:-100}
BACKENDS=${SOAK_BACKENDS:-local azurite}
SEED=${SOAK_SEED:-$(date +%s%N)}
MINUTES=${SOAK_MINUTES:-0}
LOGS=${SOAK_LOGS:-/tmp/strata-soak}
mkdir -p "$LOGS"

if [[ $BACKENDS == *azurite* && -z ${STRATA_TEST_AZURITE:-} ]]; then
  eval "$(scripts/install-test-servers.sh)"
fi

echo "==> building the torture"
timeout 1800 cargo nextest run -p strata-coordinator --test torture --no-run >/dev/null 2>"$LOGS/build.log" \
  || { cat "$LOGS/build.log"; exit 1; }

failed=0
run=0
for backend in $BACKENDS; do
  case $backend in
    local) test=operations_in_random_order_through_a_chaotic_store_on_a_local_directory ;;
    azurite) test=operations_in_random_order_through_a_chaotic_store_on_azurite ;;
    *) echo "unknown storage $backend (local or azurite)" >&2; exit 2 ;;
  esac
  echo "==> $backend: $ROUNDS rounds in runs of $CHUNK"
  printf '%-8s %-22s %7s %6s %10s %9s %13s\n' storage seed rounds secs violations gc_rounds packs_deleted
  done_rounds=0 secs=0 violations=0 gc_rounds=0 packs=0 runs=0
  started=$SECONDS
  while (( done_rounds < ROUNDS )); do
    if (( MINUTES > 0 && SECONDS - started >= MINUTES * 60 )); then
      echo "($backend: stopped after $MINUTES minutes)"
      break
    fi
    n=$(( ROUNDS - done_rounds < CHUNK ? ROUNDS - done_rounds : CHUNK ))
    seed=$(( SEED + run ))
    run=$(( run + 1 ))
    log="$LOGS/$backend-$seed.log"
    STRATA_TORTURE_SEED=$seed STRATA_TORTURE_ROUNDS=$n \
      timeout 1800 cargo nextest run -p strata-coordinator --test torture "$test" --no-capture >"$log" 2>&1
    status=$?
    line=$(grep -a '^torture-result ' "$log" | tail -1)
    if [[ -z $line ]]; then
      echo "$backend run with seed $seed ended without a result (exit $status): $log"
      failed=1
      break
    fi
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    r=$(field rounds) s=$(field secs) v=$(field violations) g=$(field gc_rounds) p=$(field packs_deleted)
    printf '%-8s %-22s %7s %6s %10s %9s %13s\n' "$backend" "$seed" "$r" "$s" "$v" "$g" "$p"
    if (( status != 0 )); then
      failed=1
      grep -a -m1 -e '^torture: violation' -e 'panicked at' -A2 "$log" | sed 's/^/    /'
      echo "    log: $log"
    fi
    done_rounds=$(( done_rounds + r )) secs=$(( secs + s )) violations=$(( violations + v ))
    gc_rounds=$(( gc_rounds + g )) packs=$(( packs + p )) runs=$(( runs + 1 ))
  done
  echo "$backend total: $runs runs, $done_rounds rounds in $secs s of rounds, $violations violations, garbage collection deleted packs in $gc_rounds rounds ($packs packs); seeds $SEED.. ($((SEED + run - 1)) last)"
done
exit $failed
