# bench/pg_lib.sh - what the PostgreSQL benchmarks share; sourced, not run:
#
#   source "$SCRIPT_DIR/pg_lib.sh"
#
# Sets PGBIN (Debian's PostgreSQL 15) and defines:
#   mib_runs_args MIB ARGS... the options `--mib N` (default MIB) and `--runs N` (default
#                             3) into MIB and RUNS; `-h` prints the script's header
#   bench_setup               checks PostgreSQL 15 is there and sets STRATA_BIN (a release
#                             build of strata unless the caller set it)
#   as_pg CMD...              CMD as the postgres user (the benchmarks run as root)
#   pg_cluster DIR PORT [LINE...]
#                             a cluster in DIR/pg, socket in DIR/sock, fsync off, 256 MB
#                             shared buffers, then each LINE appended to its configuration;
#                             started, with a database `bench`
#   pg_stop DIR               stops DIR's cluster at once, if it runs
#   psql_ ARGS...             psql on database `bench` of the last pg_cluster, unaligned,
#                             tuples only, stopping at the first error
#   timed NAME CMD...         runs CMD (its output dropped): WALL[NAME] wall seconds,
#                             CPU[NAME] user + system seconds, RSS[NAME] its largest
#                             resident set in MiB (the caller declares -A WALL CPU RSS)
PGBIN=/usr/lib/postgresql/15/bin

mib_runs_args() {
  MIB=$1
  RUNS=3
  shift
  while [[ $# -gt 0 ]]; do
    case $1 in
      --mib) MIB=$2; shift 2 ;;
      --runs) RUNS=$2; shift 2 ;;
      -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) echo "$(basename "$0"): unknown argument $1" >&2; exit 2 ;;
    esac
  done
}

bench_setup() {
  [[ -x $PGBIN/initdb ]] || { echo "install postgresql-15" >&2; exit 2; }
  if [[ -z ${STRATA_BIN:-} ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata)
    STRATA_BIN=$REPO_ROOT/target/release/strata
  fi
}

as_pg() { runuser -u postgres -- env HOME=/tmp "$@"; }

pg_cluster() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir/sock"
  chown postgres:postgres "$dir" "$dir/sock"
  as_pg "$PGBIN/initdb" -A trust -U postgres --no-locale -E UTF8 -D "$dir/pg" >/dev/null
  {
    printf "port = %s\nunix_socket_directories = '%s'\nlisten_addresses = ''\n" "$port" "$dir/sock"
    printf "fsync = off\nshared_buffers = 256MB\n"
    [[ $# -gt 0 ]] && printf '%s\n' "$@"
  } >> "$dir/pg/postgresql.conf"
  as_pg "$PGBIN/pg_ctl" start -w -D "$dir/pg" -l "$dir/pg.log" >/dev/null
  PG_SOCK=$dir/sock
  PG_PORT=$port
  as_pg "$PGBIN/psql" -X -q -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE bench"
}

pg_stop() {
  [[ -f $1/pg/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" stop -m immediate -D "$1/pg" >/dev/null 2>&1 || true
}

psql_() { as_pg "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d bench "$@"; }

timed() {
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S %M" -o "$W/time.out" "$@" >/dev/null
  WALL[$name]=$(awk '{printf "%.2f", $1}' "$W/time.out")
  CPU[$name]=$(awk '{print $2 + $3}' "$W/time.out")
  RSS[$name]=$(awk '{printf "%d", $4 / 1024}' "$W/time.out")
}
