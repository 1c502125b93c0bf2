#!/usr/bin/env bash
# High availability on one machine: a private ZooKeeper, the local cluster as its own process
# (`sing cluster`), and two backends in mesos mode sharing it, with history in MariaDB. Opens the
# dashboard on the first backend; quitting it stops everything. Kill the leader (its pid is printed)
# and watch the other take over.   Usage: scripts/demo-ha.sh [--no-tui]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=${DEMO_HA_DIR:-$HOME/.local/share/sing-ha}
mkdir -p "$DATA/zk-data"
bash scripts/ensure-services.sh

free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ZK_PORT=$(free_port); MASTER_PORT=$(free_port); API1=7201; API2=7202
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cat > "$DATA/zoo.cfg" <<CFG
tickTime=500
dataDir=$DATA/zk-data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
CFG
java -cp "/etc/zookeeper/conf:/usr/share/java/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$DATA/zoo.cfg" \
    > "$DATA/zookeeper.log" 2>&1 &
pids+=($!)
"$BIN/python" - <<PY
import pymysql
c = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
c.cursor().execute("CREATE DATABASE IF NOT EXISTS sing_demo_ha CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
PY
"$BIN/sing" cluster --port "$MASTER_PORT" --data-dir "$DATA" > "$DATA/cluster.log" 2>&1 &
pids+=($!)
for api in $API1 $API2; do
    "$BIN/sing" backend --mode mesos --master "127.0.0.1:$MASTER_PORT" --zk "127.0.0.1:$ZK_PORT" \
        --zk-session-timeout 3 --db mysql://root@127.0.0.1:3306/sing_demo_ha --port "$api" \
        --data-dir "$DATA/backend-$api" > "$DATA/backend-$api.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$API1/api/state" >/dev/null && curl -sf "http://127.0.0.1:$API2/api/state" >/dev/null && break
    sleep 0.2
done
leader=$(curl -s "http://127.0.0.1:$API1/api/state" | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin).get("leader", "?"))')
echo "Sing HA demo: backends http://127.0.0.1:$API1 (pid ${pids[2]}) and http://127.0.0.1:$API2 (pid ${pids[3]})"
echo "leader: $leader; ZooKeeper 127.0.0.1:$ZK_PORT; Mesos master 127.0.0.1:$MASTER_PORT; logs in $DATA"
"$BIN/python" -c "from sing_backend.demo import seed; seed('http://127.0.0.1:$API1')"
if [ "${1:-}" = "--no-tui" ]; then
    echo "sample requests created; press Ctrl-C to stop"
    wait "${pids[2]}"
else
    "$BIN/sing" tui --url "http://127.0.0.1:$API1"
fi
