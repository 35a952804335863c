#!/usr/bin/env bash
# The README's first command: back up a sample three-node cluster with strata's embedded
# default (in-process nodes, a local directory repository; no server, no cloud account),
# change some pages, back up again, then restore, verify and compare.
#
#   examples/quickstart.sh                              # builds strata (release) first
#   STRATA_BIN=target/debug/strata examples/quickstart.sh
#
# Every pipeline here runs under `set -o pipefail`: its last reader reads all its input
# (`sed -n 1p`, never `head`), so no writer before it can die of SIGPIPE.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# A relative STRATA_BIN is relative to where the script was started.
if [ -n "${STRATA_BIN:-}" ]; then
  strata="$(cd "$(dirname "$STRATA_BIN")" && pwd)/$(basename "$STRATA_BIN")"
fi
cd "$here"

export STRATA_CONFIG="$here/strata.toml"
if [ -z "${STRATA_PASSWORD:-}" ]; then
  export STRATA_PASSWORD="quickstart-demo-password"
  echo "(using the demo password; set STRATA_PASSWORD to choose your own)"
fi

if [ -z "${STRATA_BIN:-}" ]; then
  echo "==> building strata (release)"
  cargo build --release --quiet -p strata
  strata="$here/../target/release/strata"
fi

if [ ! -d data ]; then
  echo "==> generating sample data for nodes db1, db2, db3 (PostgreSQL-like pages, small files)"
  for i in 1 2 3; do
    python3 ../bench/gen_dataset.py "data/db$i" --size-mib 16 --seed "$i" --small-files 200 >/dev/null
  done
  # A file written within 2 s of a backup's start is read again by the next backup (its
  # timestamps cannot rule out a write the backup missed): let the fresh data age first,
  # so the second backup shows what an unchanged file costs (nothing: it is not read).
  sleep 2
fi
rm -rf repo state restored

echo "==> strata init"
"$strata" init
echo "==> strata backup   (every node of examples/strata.toml)"
"$strata" backup
echo "==> changing 1% of the table pages of every node, then backing up again"
for i in 1 2 3; do python3 ../bench/gen_dataset.py "data/db$i" --mutate --seed "$((i + 10))" >/dev/null; done
"$strata" backup
echo "==> strata list"
"$strata" list
echo "==> strata verify --read-data"
"$strata" verify --read-data
echo "==> strata restore latest --to restored"
"$strata" restore latest --to restored
for i in 1 2 3; do diff -r "data/db$i" "restored/db$i" >/dev/null; done
echo "==> restored trees are identical to the sources"
echo "==> strata status"
"$strata" status
lost=$(find data/db2 -type f | sort | sed -n 1p)
echo "==> losing $lost, then: strata restore latest --node db2   (in place)"
rm "$lost"
"$strata" restore latest --node db2
diff -r data/db2 restored/db2 >/dev/null
echo "==> db2 is whole again: done"
