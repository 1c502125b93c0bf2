#!/usr/bin/env bash
# High availability on one machine: a private ZooKeeper, the local cluster as its own process
# (`sing cluster`), and two backends in mesos mode sharing it, with history in MariaDB. Opens the
# dashboard on the first backend; quitting it stops everything. Kill the leader (its pid is printed)
# and watch the other take over.   Usage: scripts/demo-ha.sh [--no-tui]
#
# With --no-tui it runs until Ctrl-C (SIGINT) or SIGTERM, and keeps running when a backend is killed.
# However it ends, it stops everything it started: the backends, the cluster (which stops every
# task) and ZooKeeper.
# Environment:
#   DEMO_HA_DIR        data, logs and ZooKeeper's files (default ~/.local/share/sing-ha)
#   DEMO_HA_API_PORTS  the two backends' HTTP ports (default "7201 7202")
#   DEMO_HA_DB         the MariaDB database for history (default sing_demo_ha; created if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=${DEMO_HA_DIR:-$HOME/.local/share/sing-ha}
DB=${DEMO_HA_DB:-sing_demo_ha}
read -r API1 API2 <<<"${DEMO_HA_API_PORTS:-7201 7202}"
if ! [[ $DB =~ ^[A-Za-z0-9_]+$ ]]; then
    echo "demo-ha: DEMO_HA_DB must be letters, digits and underscores, not '$DB'" >&2
    exit 2
fi
if ! [[ ${API1:-} =~ ^[0-9]+$ && ${API2:-} =~ ^[0-9]+$ ]]; then
    echo "demo-ha: DEMO_HA_API_PORTS must be two port numbers, not '${DEMO_HA_API_PORTS:-}'" >&2
    exit 2
fi
mkdir -p "$DATA/zk-data"
bash scripts/ensure-services.sh

free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ZK_PORT=$(free_port); MASTER_PORT=$(free_port)

zk_pid=""; cluster_pid=""; backend_pids=()

# Stop one group of processes: SIGTERM, then SIGKILL whatever is still there after a grace period.
stop_pids() {
    local pid left
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    for _ in $(seq 150); do
        left=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ $left = 0 ] && return 0
        sleep 0.2
    done
    kill -KILL "$@" 2>/dev/null || true
}
cleanup() {
    trap '' INT TERM  # a second Ctrl-C must not cut the clean-up short
    # Backends first, so no leader is left scheduling against a vanishing cluster; then the cluster,
    # which stops every task's process group on SIGTERM; ZooKeeper last.
    stop_pids "${backend_pids[@]}"
    [ -z "$cluster_pid" ] || stop_pids "$cluster_pid"
    [ -z "$zk_pid" ] || stop_pids "$zk_pid"
    wait 2>/dev/null || true
}
trap cleanup EXIT
# An explicit exit on these signals, so the EXIT trap runs (and so does the clean-up).
trap 'exit 130' INT
trap 'exit 143' TERM

cat > "$DATA/zoo.cfg" <<CFG
tickTime=500
dataDir=$DATA/zk-data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
CFG
# A small heap: the default takes a quarter of the machine's memory.
java -Xmx256m -cp "/etc/zookeeper/conf:/usr/share/java/*" org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$DATA/zoo.cfg" > "$DATA/zookeeper.log" 2>&1 &
zk_pid=$!
# The database and its schema, before the backends start: two backends migrating an empty MySQL
# database at once collide (MySQL's DDL is not transactional) and one of them fails to start.
"$BIN/python" - "$DB" <<'PY'
import sys
import pymysql
from sing_backend.history import upgrade
c = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
c.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{sys.argv[1]}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
upgrade(f"mysql://root@127.0.0.1:3306/{sys.argv[1]}")
PY
"$BIN/sing" cluster --port "$MASTER_PORT" --data-dir "$DATA" > "$DATA/cluster.log" 2>&1 &
cluster_pid=$!
for api in $API1 $API2; do
    "$BIN/sing" backend --mode mesos --master "127.0.0.1:$MASTER_PORT" --zk "127.0.0.1:$ZK_PORT" \
        --zk-session-timeout 3 --db "mysql://root@127.0.0.1:3306/$DB" --port "$api" \
        --data-dir "$DATA/backend-$api" > "$DATA/backend-$api.log" 2>&1 &
    backend_pids+=($!)
done

# Both backends up and a leader elected (the samples are created through the first backend, which
# forwards them to the leader).
leader_of() {
    curl -sf "http://127.0.0.1:$1/api/state" 2>/dev/null \
        | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin).get("leader", ""))' 2>/dev/null || true
}
leader=""
for _ in $(seq 300); do
    leader=$(leader_of "$API1")
    [ -n "$leader" ] && [ -n "$(leader_of "$API2")" ] && break
    leader=""
    sleep 0.2
done
if [ -z "$leader" ]; then
    echo "demo-ha: the backends did not come up with a leader within 60 s; logs in $DATA" >&2
    exit 1
fi
echo "Sing HA demo: backends http://127.0.0.1:$API1 (pid ${backend_pids[0]}) and http://127.0.0.1:$API2 (pid ${backend_pids[1]})"
echo "leader: $leader; ZooKeeper 127.0.0.1:$ZK_PORT (pid $zk_pid); Mesos master 127.0.0.1:$MASTER_PORT (pid $cluster_pid); logs in $DATA"
"$BIN/python" -c "from sing_backend.demo import seed; seed('http://127.0.0.1:$API1')"
if [ "${1:-}" = "--no-tui" ]; then
    echo "sample requests created; press Ctrl-C to stop"
    # Until a signal (its trap ends the script) or until every process is gone: a killed backend is
    # part of the demo and must not end it.
    while [ -n "$(jobs -pr)" ]; do
        wait -n || true
    done
else
    # Both backends: killing the one the dashboard uses moves it to the other.
    "$BIN/sing" tui --url "http://127.0.0.1:$API1,http://127.0.0.1:$API2"
fi
