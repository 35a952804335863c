#!/usr/bin/env bash
# A throwaway ClickHouse cluster on 127.0.0.1 for the ClickHouse plugin's tests: one
# standalone ZooKeeper and SHARDS x REPLICAS ClickHouse servers, all under DIR, from Debian's
# packages (`apt-get install clickhouse-server zookeeperd`: ClickHouse 18.16, ZooKeeper 3.8).
# Nothing system-wide is used or changed: not the packages' services nor their /etc configs.
#
#   scripts/clickhouse-cluster.sh start DIR BASE_PORT [--shards N] [--replicas N]  (2 x 2)
#   scripts/clickhouse-cluster.sh stop DIR
#   scripts/clickhouse-cluster.sh zk-kill DIR    (SIGKILL to ZooKeeper: a coordination service lost)
#   scripts/clickhouse-cluster.sh zk-start DIR   (ZooKeeper again, on its data and port)
#
# start refuses a DIR whose cluster still runs and ports already in use, waits (60 s at most
# in all) until ZooKeeper and every server answer, and prints the `export` lines the tests read:
#   STRATA_TEST_CLICKHOUSE_ZK     127.0.0.1:BASE_PORT
#   STRATA_TEST_CLICKHOUSE_NODES  http://127.0.0.1:PORT,... in order ch1..chN
#   STRATA_TEST_CLICKHOUSE_DATA   each server's data path (its <path>), same order
# Node chN (1-based) is replica ((N-1) % REPLICAS)+1 of shard ((N-1) / REPLICAS)+1: in the
# default 2 x 2, ch1,ch2 hold shard 1 and ch3,ch4 shard 2. Its ports are BASE_PORT+10+(N-1)*3
# (native tcp), +1 (http) and +2 (interserver http, for replica fetches). Its macros are
# {shard} = the shard's number and {replica} = chN; the cluster is `strata`, with
# internal_replication; ON CLUSTER DDL goes through /clickhouse/task_queue/ddl.
# stop sends TERM (ClickHouse, then ZooKeeper), and KILL to what still runs after 30 s.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR BASE_PORT [--shards N] [--replicas N] | stop DIR | zk-kill DIR | zk-start DIR" >&2
  exit 2
}

CH_SERVER=${CH_SERVER:-/usr/sbin/clickhouse-server}
# zookeeper.jar's manifest names its dependencies; slf4j-simple makes it log (to stderr).
ZK_CLASSPATH=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
START_TIMEOUT=60
STOP_TIMEOUT=30

# Ports of node N (1-based).
tcp_port() { echo $((base + 10 + ($1 - 1) * 3)); }
http_port() { echo $((base + 10 + ($1 - 1) * 3 + 1)); }

# alive PIDFILE: the process in PIDFILE runs and is ours (its command line names DIR, so a
# recycled pid is never taken for it).
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
  ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# zk_ok PORT: our ZooKeeper answers there (its `conf` four-letter command names our dataDir).
zk_ok() {
  local reply
  reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; echo conf >&3; cat <&3" 2>/dev/null) || true
  grep -qxF "dataDir=$dir/zk/data/version-2" <<<"$reply"
}

# http_ok PORT N: chN answers there over HTTP (its data path is chN's).
http_ok() {
  local q="SELECT%20data_path%20FROM%20system.databases%20WHERE%20name%3D%27system%27"
  [ "$(timeout 5 curl -sf "http://127.0.0.1:$1/?query=$q" 2>/dev/null)" = "$dir/ch$2/data/data/system/" ]
}

# wait_until PIDFILE LOG CHECK...: polls CHECK until it succeeds. Fails (showing the end of
# LOG, a file or a folder of *.log) if the process exits or the start's deadline passes.
wait_until() {
  local pidfile=$1 log=$2 name
  name=$(basename "$pidfile" .pid)
  shift 2
  until "$@"; do
    if ! alive "$pidfile" || [ "$SECONDS" -ge "$deadline" ]; then
      echo "error: $name is not ready (exited, or ${START_TIMEOUT}s passed); its log ends:" >&2
      if [ -d "$log" ]; then tail -n 10 "$log"/*.log >&2 || true; else tail -n 20 "$log" >&2 || true; fi
      return 1
    fi
    sleep 0.3
  done
}

# write_node_config N SHARD: chN's config.xml and users.xml.
write_node_config() {
  local n=$1 d=$dir/ch$1 tcp s r
  tcp=$(tcp_port "$n")
  mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas" "$d/log"
  # Every node lists every node in the cluster.
  local shards_xml=""
  for ((s = 1; s <= shards; s++)); do
    shards_xml+="      <shard>"$'\n'"        <internal_replication>true</internal_replication>"$'\n'
    for ((r = 1; r <= replicas; r++)); do
      shards_xml+="        <replica><host>127.0.0.1</host><port>$(tcp_port $(((s - 1) * replicas + r)))</port></replica>"$'\n'
    done
    shards_xml+="      </shard>"$'\n'
  done
  # The paths end with '/': 18.16 appends names to them as they are.
  cat >"$d/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>$d/log/clickhouse-server.log</log>
    <errorlog>$d/log/clickhouse-server.err.log</errorlog>
    <size>100M</size>
    <count>2</count>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp</tcp_port>
  <http_port>$((tcp + 1))</http_port>
  <interserver_http_port>$((tcp + 2))</interserver_http_port>
  <!-- The address the other replicas fetch parts from (else \`hostname -f\`). -->
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <format_schema_path>$d/format_schemas/</format_schema_path>
  <users_config>$d/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <remote_servers>
    <strata>
${shards_xml}    </strata>
  </remote_servers>
  <zookeeper>
    <node><host>127.0.0.1</host><port>$base</port></node>
    <session_timeout_ms>30000</session_timeout_ms>
  </zookeeper>
  <macros>
    <shard>$2</shard>
    <replica>ch$n</replica>
  </macros>
  <distributed_ddl>
    <path>/clickhouse/task_queue/ddl</path>
  </distributed_ddl>
</yandex>
EOF
  cat >"$d/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
EOF
}

# start_zookeeper: ZooKeeper on $dir/zk/zoo.cfg, awaited (its port is $base).
start_zookeeper() {
  # setsid: the servers outlive this script and its session.
  setsid java -Xmx256m -XX:-UsePerfData -cp "$ZK_CLASSPATH" -Dzookeeper.log.dir="$dir/zk" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zk/zoo.cfg" \
    >>"$dir/zk/zk.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/zk.pid"
  wait_until "$dir/pids/zk.pid" "$dir/zk/zk.log" zk_ok "$base"
}

start() {
  [ $# -ge 2 ] || usage
  local arg_dir=$1
  base=$2
  shift 2
  shards=2 replicas=2
  while [ $# -gt 0 ]; do
    case $1 in
      --shards) shards=${2:-}; shift 2 || usage ;;
      --replicas) replicas=${2:-}; shift 2 || usage ;;
      *) usage ;;
    esac
  done
  [[ $base =~ ^[0-9]+$ && $shards =~ ^[1-9][0-9]*$ && $replicas =~ ^[1-9][0-9]*$ ]] || usage
  local nodes=$((shards * replicas)) f n
  mkdir -p "$arg_dir/pids"
  dir=$(cd "$arg_dir" && pwd)
  for f in "$dir"/pids/*.pid; do
    if [ -e "$f" ] && alive "$f"; then
      echo "error: a cluster still runs in $dir ($f); stop it first" >&2
      exit 1
    fi
  done
  rm -f "$dir"/pids/*.pid
  # Every port must be free: a readiness check must not be answered by someone else.
  local ports=("$base") port
  for ((n = 1; n <= nodes; n++)); do
    ports+=("$(tcp_port "$n")" "$(http_port "$n")" $(($(tcp_port "$n") + 2)))
  done
  for port in "${ports[@]}"; do
    port_free "$port" || { echo "error: port $port on 127.0.0.1 is in use" >&2; exit 1; }
  done
  # A start that fails stops what it started.
  trap 'stop "$dir" >/dev/null 2>&1 || true' EXIT
  deadline=$((SECONDS + START_TIMEOUT))

  # ZooKeeper first (it takes well under a second): a server that finds it down logs stack
  # traces, and its ON CLUSTER worker only retries later.
  mkdir -p "$dir/zk/data"
  cat >"$dir/zk/zoo.cfg" <<EOF
tickTime=2000
dataDir=$dir/zk/data
clientPort=$base
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=conf,ruok,srvr,stat,mntr
EOF
  start_zookeeper

  # The ClickHouse servers start together, then each is awaited.
  for ((n = 1; n <= nodes; n++)); do
    write_node_config "$n" $(((n - 1) / replicas + 1))
    (cd "$dir/ch$n" && exec setsid "$CH_SERVER" --config-file="$dir/ch$n/config.xml" \
      >"$dir/ch$n/log/stdout.log" 2>&1 </dev/null) &
    echo $! >"$dir/pids/ch$n.pid"
  done
  for ((n = 1; n <= nodes; n++)); do
    wait_until "$dir/pids/ch$n.pid" "$dir/ch$n/log" http_ok "$(http_port "$n")" "$n"
  done
  trap - EXIT

  local urls=() paths=()
  for ((n = 1; n <= nodes; n++)); do
    urls+=("http://127.0.0.1:$(http_port "$n")")
    paths+=("$dir/ch$n/data")
  done
  echo "export STRATA_TEST_CLICKHOUSE_ZK=127.0.0.1:$base"
  echo "export STRATA_TEST_CLICKHOUSE_NODES=$(IFS=,; echo "${urls[*]}")"
  echo "export STRATA_TEST_CLICKHOUSE_DATA=$(IFS=,; echo "${paths[*]}")"
}

# terminate PIDFILE...: TERM to each that runs, KILL to those still running after 30 s.
terminate() {
  local f live=()
  for f in "$@"; do
    if [ -e "$f" ] && alive "$f"; then
      kill -TERM "$(cat "$f")" 2>/dev/null || true
      live+=("$f")
    fi
  done
  local end=$((SECONDS + STOP_TIMEOUT))
  for f in "${live[@]}"; do
    while alive "$f" && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
    if alive "$f"; then
      echo "warning: $(basename "$f" .pid) still runs ${STOP_TIMEOUT}s after TERM; killing it" >&2
      kill -KILL "$(cat "$f")" 2>/dev/null || true
    fi
  done
  rm -f "$@"
}

stop() {
  [ $# -eq 1 ] || usage
  [ -d "$1/pids" ] || return 0
  dir=$(cd "$1" && pwd)
  # ClickHouse first: a server shutting down still talks to ZooKeeper (about 5 s).
  terminate "$dir"/pids/ch*.pid
  terminate "$dir/pids/zk.pid"
}

# zk_kill DIR: SIGKILL to the cluster's ZooKeeper (its data stays, as after a crash).
zk_kill() {
  [ $# -eq 1 ] || usage
  dir=$(cd "$1" && pwd)
  local f=$dir/pids/zk.pid pid
  alive "$f" || { echo "error: ZooKeeper of $dir does not run" >&2; exit 1; }
  pid=$(cat "$f")
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$f"
}

# zk_start DIR: ZooKeeper again after zk-kill, on the same port and data.
zk_start() {
  [ $# -eq 1 ] || usage
  dir=$(cd "$1" && pwd)
  ! alive "$dir/pids/zk.pid" || { echo "error: ZooKeeper of $dir runs already" >&2; exit 1; }
  base=$(sed -n 's/^clientPort=//p' "$dir/zk/zoo.cfg")
  deadline=$((SECONDS + START_TIMEOUT))
  start_zookeeper
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  zk-kill) shift; zk_kill "$@" ;;
  zk-start) shift; zk_start "$@" ;;
  *) usage ;;
esac
