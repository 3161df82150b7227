#!/usr/bin/env bash
# demo.sh — run a three-node pgquorum cluster on loopback under one directory.
#   scripts/demo.sh start   build, install what is missing, start, wait until healthy
#   scripts/demo.sh status  print the cluster
#   scripts/demo.sh stop    stop every process the demo started (by PID) and remove its directory
# DEMO_DIR (default ./demo) holds configs, data, logs and PID files.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-$PWD/demo}
BIN=${BIN:-$PWD/bin/pgquorum}
BASE_PORT=${BASE_PORT:-17000}
N=3

endpoints() {
  local eps=()
  for i in $(seq 1 $N); do eps+=("127.0.0.1:$((BASE_PORT + 100 + i))"); done
  (IFS=,; echo "${eps[*]}")
}

start() {
  scripts/install-deps.sh
  mkdir -p "$(dirname "$BIN")"
  go build -o "$BIN" ./cmd/pgquorum
  mkdir -p "$DEMO_DIR"
  local initial=()
  for i in $(seq 1 $N); do initial+=("n$i=127.0.0.1:$((BASE_PORT + i))"); done
  for i in $(seq 1 $N); do
    local cfg="$DEMO_DIR/n$i.yaml"
    cat > "$cfg" <<YAML
cluster_name: demo
node_id: n$i
data_dir: $DEMO_DIR/n$i
raft: {bind_addr: "127.0.0.1:$((BASE_PORT + i))"}
grpc: {listen_addr: "127.0.0.1:$((BASE_PORT + 100 + i))"}
http: {listen_addr: "127.0.0.1:$((BASE_PORT + 200 + i))"}
bootstrap: {initial_cluster: [$(IFS=,; echo "${initial[*]}")]}
postgres: {data_dir: $DEMO_DIR/pg$i, port: $((BASE_PORT + 300 + i))}
YAML
    if [ -f "$DEMO_DIR/n$i.pid" ] && kill -0 "$(cat "$DEMO_DIR/n$i.pid")" 2>/dev/null; then
      echo "n$i already running (pid $(cat "$DEMO_DIR/n$i.pid"))"
      continue
    fi
    nohup "$BIN" serve --config "$cfg" >> "$DEMO_DIR/n$i.log" 2>&1 &
    echo $! > "$DEMO_DIR/n$i.pid"
  done
  echo "waiting for the cluster to form..."
  for _ in $(seq 1 60); do
    if "$BIN" ctl --endpoints "$(endpoints)" members 2>/dev/null | grep -q "n$N"; then
      status
      cat <<TXT

Try:
  $BIN ctl --endpoints $(endpoints) status
  $BIN ctl --endpoints $(endpoints) watch
  kill -9 \$(cat $DEMO_DIR/n1.pid)    # then run status again: a new leader takes over
  scripts/demo.sh stop
TXT
      return 0
    fi
    sleep 0.5
  done
  echo "cluster did not form; logs are in $DEMO_DIR" >&2
  return 1
}

status() {
  "$BIN" ctl --endpoints "$(endpoints)" status
  echo
  "$BIN" ctl --endpoints "$(endpoints)" members
}

stop() {
  for f in "$DEMO_DIR"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  rm -rf "$DEMO_DIR"
  echo "demo stopped"
}

case "${1:-start}" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
