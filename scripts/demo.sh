#!/usr/bin/env bash
# demo.sh — run a three-node pgquorum cluster with PostgreSQL 15, a PgBouncer and
# a bouncer agent, all on loopback under one directory.
#   scripts/demo.sh start     build, install what is missing, start, wait until healthy
#   scripts/demo.sh status    print the cluster
#   scripts/demo.sh failover  kill -9 the primary host (agent and postmaster) while a
#                             client writes through PgBouncer; show the recovery
#   scripts/demo.sh stop      stop every process the demo started (by PID), remove the directory
# DEMO_DIR (default ./demo) holds configs, data, logs and PID files.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DEMO_DIR=${DEMO_DIR:-$PWD/demo}
BIN=${BIN:-$PWD/bin/pgquorum}
BASE_PORT=${BASE_PORT:-17000}
N=3
PW=demo-secret
PGB_PORT=$((BASE_PORT + 432))
PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
# The demo runs on loopback without TLS (tls.insecure in every config): ctl must be told too.
export PGQUORUMCTL_INSECURE=true

endpoints() {
  local eps=()
  for i in $(seq 1 $N); do eps+=("127.0.0.1:$((BASE_PORT + 100 + i))"); done
  (IFS=,; echo "${eps[*]}")
}

start() {
  lib_build "$BIN"
  mkdir -p "$DEMO_DIR"
  lib_reachable "$DEMO_DIR"
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
timing: {profile: fast}
tls: {insecure: true}  # loopback demo; see docs/security.md for TLS
postgres:
  data_dir: $DEMO_DIR/pg$i
  port: $((BASE_PORT + 300 + i))
  superuser: {password: $PW}
  replication: {password: $PW}
  rewind: {password: $PW}
YAML
    if lib_running "$DEMO_DIR/n$i.pid"; then
      echo "n$i already running (pid $(cat "$DEMO_DIR/n$i.pid"))"
      continue
    fi
    lib_spawn "$DEMO_DIR/n$i.pid" "$DEMO_DIR/n$i.log" "$BIN" serve --config "$cfg"
  done
  start_bouncer
  echo "waiting for a primary and two replicas..."
  for _ in $(seq 1 120); do
    if "$BIN" ctl --endpoints "$(endpoints)" list 2>/dev/null | grep -c "running" | grep -q "^$N$" &&
       PGPASSWORD=$PW psql -h 127.0.0.1 -p "$PGB_PORT" -U postgres -d app -Atc "select 1" >/dev/null 2>&1; then
      status
      cat <<TXT

Connect through PgBouncer (it always routes to the current primary):
  PGPASSWORD=$PW psql -h 127.0.0.1 -p $PGB_PORT -U postgres app
Try:
  $BIN ctl --insecure --endpoints $(endpoints) list
  $BIN ctl --insecure --endpoints $(endpoints) switchover
  scripts/demo.sh failover     # kill -9 the primary host while a client writes
  scripts/demo.sh stop
TXT
      return 0
    fi
    sleep 0.5
  done
  echo "cluster did not become healthy; logs are in $DEMO_DIR" >&2
  return 1
}

# start_bouncer runs PgBouncer (as postgres) and the bouncer agent that routes it.
start_bouncer() {
  local inc="$DEMO_DIR/pgbouncer-databases.ini"
  [ -f "$inc" ] || : > "$inc"
  chmod 644 "$inc"
  printf '"postgres" "%s"\n' "$PW" > "$DEMO_DIR/userlist.txt"
  cat > "$DEMO_DIR/pgbouncer.ini" <<INI
[databases]
%include $inc

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = md5
auth_file = $DEMO_DIR/userlist.txt
admin_users = postgres
pool_mode = transaction
server_login_retry = 0.1
server_connect_timeout = 2
logfile = $DEMO_DIR/pgbouncer.log
pidfile =
INI
  chown postgres "$DEMO_DIR/pgbouncer.ini" "$DEMO_DIR/userlist.txt" 2>/dev/null || true
  touch "$DEMO_DIR/pgbouncer.log"; chown postgres "$DEMO_DIR/pgbouncer.log" 2>/dev/null || true
  if ! lib_running "$DEMO_DIR/pgbouncer.pid"; then
    local run=()
    [ "$(id -u)" -eq 0 ] && run=(setpriv --reuid=postgres --regid=postgres --init-groups)
    lib_spawn "$DEMO_DIR/pgbouncer.pid" "$DEMO_DIR/pgbouncer.out" "${run[@]}" "$PGBOUNCER" "$DEMO_DIR/pgbouncer.ini"
  fi
  cat > "$DEMO_DIR/bouncer.yaml" <<YAML
agent_id: demo-bouncer
contact_lease: 3s
tls: {insecure: true}
pgbouncer:
  host: 127.0.0.1
  port: $PGB_PORT
  admin_user: postgres
  password: $PW
  config_path: $DEMO_DIR/pgbouncer.ini
  include_path: $inc
clusters:
  - name: demo
    endpoints: [$(endpoints)]
    databases: [{name: app, dbname: postgres}]
YAML
  if ! lib_running "$DEMO_DIR/bouncer.pid"; then
    lib_spawn "$DEMO_DIR/bouncer.pid" "$DEMO_DIR/bouncer.log" "$BIN" bouncer --config "$DEMO_DIR/bouncer.yaml"
  fi
}

# failover kills the primary host while a client writes through PgBouncer.
failover() {
  local primary
  primary=$("$BIN" ctl --endpoints "$(endpoints)" list | awk '$3 == "primary" {print $1}')
  [ -n "$primary" ] || { echo "no primary" >&2; return 1; }
  PGPASSWORD=$PW psql -h 127.0.0.1 -p "$PGB_PORT" -U postgres -d app -qc \
    "create table if not exists demo_writes (id serial primary key, at timestamptz default now())" >/dev/null
  echo "writing through PgBouncer every 100 ms; killing $primary (agent and postmaster) with -9"
  local pm fail=0 t0 t1=""
  pm=$(head -1 "$DEMO_DIR/pg${primary#n}/postmaster.pid")
  kill -9 "$(cat "$DEMO_DIR/$primary.pid")" "$pm"
  t0=$(date +%s%N)
  for _ in $(seq 1 300); do
    if PGPASSWORD=$PW timeout 2 psql -h 127.0.0.1 -p "$PGB_PORT" -U postgres -d app -qc "insert into demo_writes default values" >/dev/null 2>&1; then
      t1=$(date +%s%N); break
    fi
    fail=$((fail + 1))
    sleep 0.1
  done
  if [ -n "$t1" ]; then
    echo "first successful write $(( (t1 - t0) / 1000000 )) ms after the kill ($fail failed attempts)"
  else
    echo "no successful write within 30 s" >&2
  fi
  "$BIN" ctl --endpoints "$(endpoints)" list
  "$BIN" ctl --endpoints "$(endpoints)" history
  echo "restarting $primary: it rejoins as a replica"
  lib_spawn "$DEMO_DIR/$primary.pid" "$DEMO_DIR/$primary.log" "$BIN" serve --config "$DEMO_DIR/$primary.yaml"
}

status() {
  "$BIN" ctl --endpoints "$(endpoints)" list
  echo
  "$BIN" ctl --endpoints "$(endpoints)" status
}

stop() {
  # Agents first (stopping an agent never stops PostgreSQL), then postmasters by PID.
  lib_stop_pidfile "$DEMO_DIR"/*.pid "$DEMO_DIR"/n*/fence-guard.pid
  for i in $(seq 1 $N); do lib_stop_postmaster "$DEMO_DIR/pg$i"; done
  rm -rf "$DEMO_DIR"
  echo "demo stopped"
}

case "${1:-start}" in
  start) start ;;
  status) status ;;
  failover) failover ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|failover|stop" >&2; exit 2 ;;
esac
