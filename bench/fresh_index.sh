#!/usr/bin/env bash
# bench/fresh_index.sh - what a host with an empty state directory (a new host, a pod
# without a state volume, another user) pays to open a large repository: its first
# command reads every index object and builds the local index table.
#
#   bench/fresh_index.sh [BLOBS] [WORKDIR]      (default 400000, /tmp/strata-fresh)
#
# The repository is fabricated (`crates/strata-repo/examples/fabricate_index.rs`): BLOBS
# blob entries in packs of PER_PACK (default 20000: packs of small files) that do not
# exist, beside real backups. Each command runs from an empty state directory, then
# again with the one it left (warm); a one-file backup also runs into an empty
# repository. Prints each command's time and peak RssAnon/RssFile, and the resident
# cost of the index: (fresh backup's peak RssAnon - empty repository's) / BLOBS.
#
# COMMANDS (default "backup") may add: restore ls verify gc (gc as --dry-run: the
# fabricated packs are referenced by no backup, a real run would delete them all).
#
# The repositories are unencrypted ([repository] encryption = "none"): the key
# derivation's 64 MiB (Argon2id) would be every command's peak and hide what the index
# costs. ENCRYPTED=1 measures them encrypted.
#
# Needs: cargo build --profile dist -p strata --bin strata -p strata-repo --examples
set -euo pipefail
BLOBS=${1:-400000}
W=${2:-/tmp/strata-fresh}
PER_PACK=${PER_PACK:-20000}
COMMANDS=${COMMANDS:-backup}
BIN=${STRATA_BIN:-$PWD/target/dist/strata}
FAB=${FABRICATE_BIN:-$PWD/target/dist/examples/fabricate_index}
rm -rf "$W"; mkdir -p "$W/tiny"
if [[ ${ENCRYPTED:-0} == 1 ]]; then
  export STRATA_PASSWORD=fresh-bench
else
  unset STRATA_PASSWORD
  printf '[repository]\nencryption = "none"\n' > "$W/strata.toml"
  export STRATA_CONFIG=$W/strata.toml
fi
echo "a new host's first file" > "$W/tiny/hello.txt"

source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

# The peak RssAnon (MiB) of the last `measure` line.
last_anon() { awk '{for (i = 1; i < NF; i++) if ($(i+1) == "MiB" && $(i+2) == "anon") print $i}' "$W/measure.log" | tail -1; }
run() { measure "$@" | tee -a "$W/measure.log"; }

# One command of COMMANDS in the current repository.
command_of() {
  case $1 in
    backup) echo backup --node-name n1 "$W/tiny" ;;
    restore) echo restore latest --to "$W/restored-$RANDOM" ;;
    ls) echo ls latest ;;
    verify) echo verify ;;
    gc) echo gc --dry-run ;;
  esac
}

export STRATA_REPO=$W/empty/repo STRATA_STATE_DIR=$W/empty/state
"$BIN" init >/dev/null
run "empty repository: backup (1 file)" "$BIN" backup --node-name n1 "$W/tiny"
empty_anon=$(last_anon)

export STRATA_REPO=$W/large/repo STRATA_STATE_DIR=$W/large/state
"$BIN" init >/dev/null
# verify checks every indexed pack's size: with it, the fabricated packs are made as
# sparse files of their size (no disk blocks).
[[ " $COMMANDS " == *" verify "* ]] && export STRATA_FABRICATE_PACKS=sparse
STRATA_FABRICATE_PER_PACK=$PER_PACK run "fabricate $BLOBS blobs ($PER_PACK a pack)" "$FAB" "$STRATA_REPO" "$BLOBS"
du -sh "$STRATA_REPO/index" | sed 's/^/index objects: /'
"$BIN" backup --node-name n0 "$W/tiny" >/dev/null   # a backup for restore and ls
rm -rf "$STRATA_STATE_DIR"
for c in $COMMANDS; do
  read -r -a args <<<"$(command_of "$c")"
  rm -rf "$STRATA_STATE_DIR"
  run "$c, empty state directory" "$BIN" "${args[@]}"
  [[ $c == backup ]] && fresh_anon=$(last_anon)
  run "$c, warm state directory" "$BIN" "${args[@]}"
done
du -sh "$STRATA_STATE_DIR" | sed 's/^/local index table: /'
if [[ -n ${fresh_anon:-} ]]; then
  printf 'resident index cost of a fresh host: %.1f MiB over the empty repository, %.1f B per blob\n' \
    "$(echo "$fresh_anon - $empty_anon" | bc -l)" "$(echo "($fresh_anon - $empty_anon) * 1048576 / $BLOBS" | bc -l)"
fi
