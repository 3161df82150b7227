#!/usr/bin/env bash
# netns-cluster.sh — three pgquorum hosts on one machine: each node runs in its own
# network namespace with its own address, PgBouncer and the bouncer agent in a fourth,
# all joined by a bridge in a fifth namespace. The root namespace's network is not
# touched. Configs come from `pgquorum gen-config` with TLS from scripts/gen-certs.sh,
# as on real hosts (docs/deploy.md). Root only.
#   scripts/netns-cluster.sh up              build, create the namespaces, start, wait until healthy
#   scripts/netns-cluster.sh status          ctl list and each node's role from its HTTP health checks
#   scripts/netns-cluster.sh roles           "NODE primary|replica|witness|unhealthy|unreachable" per node
#   scripts/netns-cluster.sh ctl ARGS...     pgquorum ctl with the cluster's endpoints and admin certificate
#   scripts/netns-cluster.sh psql [ARGS...]  psql through PgBouncer (database app)
#   scripts/netns-cluster.sh isolate NODE    cut NODE off from every other namespace
#   scripts/netns-cluster.sh partition NODE...  cut the named nodes off from the rest
#   scripts/netns-cluster.sh heal            remove every partition
#   scripts/netns-cluster.sh exec NAME CMD...   run CMD in namespace NAME (n1, n2, n3, pgb)
#   scripts/netns-cluster.sh down            stop everything by PID, delete the namespaces,
#                                            remove the state directory
# NETNS_DIR (default ./netns) holds configs, certificates, data, logs and PID files.
# NETNS_PREFIX (default pgq-) starts every namespace name; NETNS_SUBNET (default
# 10.213.0) is the /24 the namespaces use among themselves. PROFILE is timing.profile
# (default default). PARTITION_TARGET is DROP (default: packets vanish, peers time
# out) or REJECT (connections fail at once). WITNESS=n3 (at up) makes that node a
# witness: two PostgreSQL hosts plus a witness.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
DIR=${NETNS_DIR:-$PWD/netns}
BIN=${BIN:-$PWD/bin/pgquorum}
PREFIX=${NETNS_PREFIX:-pgq-}
SUBNET=${NETNS_SUBNET:-10.213.0}
PROFILE=${PROFILE:-default}
WITNESS=${WITNESS:-}
PARTITION_TARGET=${PARTITION_TARGET:-DROP}
PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
NODES=(n1 n2 n3)
CHAIN=pgq-partition
# A running cluster keeps its settings in the state directory, so that every
# later command (down above all) acts on what up created.
if [ -f "$DIR/netns.env" ]; then
  # shellcheck source=/dev/null
  . "$DIR/netns.env"
fi

# usage prints the header comment.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

# need_cluster: commands other than up and down act on a running cluster.
need_cluster() {
  if [ ! -f "$DIR/netns.env" ]; then
    echo "netns-cluster: no cluster in $DIR (set NETNS_DIR, or run '$0 up')" >&2
    exit 1
  fi
}

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "netns-cluster: must run as root: it creates network namespaces, veths and iptables rules" >&2
    echo "  (try: sudo $0 ${1:-up})" >&2
    exit 1
  fi
}

# addr NAME: the address of a namespace member.
addr() {
  case "$1" in
    n1) echo "$SUBNET.11" ;; n2) echo "$SUBNET.12" ;; n3) echo "$SUBNET.13" ;;
    pgb) echo "$SUBNET.30" ;;
    *) echo "netns-cluster: no member $1 (n1, n2, n3, pgb)" >&2; return 1 ;;
  esac
}

ns() { echo "$PREFIX$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

# endpoints: the gRPC addresses, nodes cut off by a partition last (ctl tries them in turn).
endpoints() {
  local eps=() late=() n
  for n in "${NODES[@]}"; do
    if [ -f "$DIR/partitioned" ] && grep -qx "$n" "$DIR/partitioned"; then
      late+=("$(addr "$n"):7101")
    else
      eps+=("$(addr "$n"):7101")
    fi
  done
  eps+=("${late[@]}")
  (IFS=,; echo "${eps[*]}")
}

# ctl ARGS: pgquorum ctl from the PgBouncer namespace with the admin certificate.
ctl() {
  PGQUORUMCTL_CACERT=$DIR/etc/tls/ca.pem PGQUORUMCTL_CERT=$DIR/etc/tls/admin.pem \
    PGQUORUMCTL_KEY=$DIR/etc/tls/admin-key.pem \
    in_ns pgb "$BIN" ctl --timeout 2s --endpoints "$(endpoints)" "$@"
}

# pgb_psql ARGS: psql through PgBouncer as postgres, database app.
pgb_psql() {
  PGPASSWORD=$(cat "$DIR/etc/secrets/superuser.password") PGCONNECT_TIMEOUT=3 \
    in_ns pgb psql -h "$(addr pgb)" -p 6432 -U postgres -d app "$@"
}

# create_namespaces: the hub with its bridge, then one namespace per member
# with a veth into the hub. Each name goes to $DIR/namespaces before it is
# created, so that down removes exactly what up made, even after a failure.
create_namespaces() {
  local hub m
  hub=$(ns hub)
  for m in hub "${NODES[@]}" pgb; do
    if ip netns list | awk '{print $1}' | grep -qx "$(ns "$m")"; then
      echo "netns-cluster: namespace $(ns "$m") exists; run '$0 down' or set NETNS_PREFIX" >&2
      return 1
    fi
  done
  for m in hub "${NODES[@]}" pgb; do
    ns "$m" >> "$DIR/namespaces"
    ip netns add "$(ns "$m")"
    ip -n "$(ns "$m")" link set lo up
  done
  ip -n "$hub" link add name br0 type bridge
  ip -n "$hub" link set br0 up
  for m in "${NODES[@]}" pgb; do
    ip -n "$hub" link add name "$m" type veth peer name eth0 netns "$(ns "$m")"
    ip -n "$hub" link set "$m" master br0 up
    ip -n "$(ns "$m")" addr add "$(addr "$m")/24" dev eth0
    ip -n "$(ns "$m")" link set eth0 up
  done
}

# configure: certificates, passwords, configs from gen-config, checked with
# validate-config; PgBouncer's files.
configure() {
  local addrs=() hosts=() n f
  local witness=()
  for n in "${NODES[@]}"; do
    addrs+=("$(addr "$n")")
    if [ "$n" = "$WITNESS" ]; then witness=(--witness "$n=$(addr "$n")"); else hosts+=("$n=$(addr "$n")"); fi
  done
  scripts/gen-certs.sh --out "$DIR/etc/tls" "${addrs[@]}" > "$DIR/gen-certs.log"
  mkdir -p "$DIR/etc/secrets" "$DIR/pgbouncer"
  for f in superuser replication rewind pgbouncer; do
    (umask 077; openssl rand -hex 16 > "$DIR/etc/secrets/$f.password")
  done
  "$BIN" gen-config --cluster netns --out "$DIR/gen" --profile "$PROFILE" \
    --etc-dir "$DIR/etc" --data-dir "$DIR/{name}/raft" --pg-data-dir "$DIR/{name}/pg" \
    --pgbouncer-dir "$DIR/pgbouncer" --bouncer-state-dir "$DIR/pgbouncer" \
    --bouncer "pgb=$(addr pgb)" --database app=postgres "${witness[@]}" "${hosts[@]}" > "$DIR/gen-config.log"
  for n in "${NODES[@]}"; do
    mkdir -p "$DIR/$n"
    chmod 755 "$DIR/$n"
    "$BIN" validate-config "$DIR/gen/$n/pgquorum.yaml"
  done
  cp "$DIR/gen/pgb/pgbouncer.ini" "$DIR/pgbouncer/pgbouncer.ini"
  printf '"postgres" "%s"\n"pgbouncer" "%s"\n' "$(cat "$DIR/etc/secrets/superuser.password")" \
    "$(cat "$DIR/etc/secrets/pgbouncer.password")" > "$DIR/pgbouncer/userlist.txt"
  : > "$DIR/pgbouncer/databases.ini"
  chmod 755 "$DIR/pgbouncer"
  chmod 600 "$DIR/pgbouncer/userlist.txt"
  chmod 644 "$DIR/pgbouncer/pgbouncer.ini" "$DIR/pgbouncer/databases.ini"
  chown postgres "$DIR/pgbouncer/userlist.txt" "$DIR/pgbouncer/pgbouncer.ini"
}

# up_failed: the EXIT trap of up. Whatever up made before a failure is
# recorded in $DIR; say how to remove it.
up_failed() {
  local rc=$?
  [ "$rc" -eq 0 ] || echo "netns-cluster: up failed (exit $rc); logs are in $DIR; remove what it made with: $0 down" >&2
}

up() {
  trap up_failed EXIT
  command -v curl >/dev/null || { echo "netns-cluster: curl is missing (apt-get install curl): it reads the health checks" >&2; exit 1; }
  if [ -f "$DIR/namespaces" ]; then
    echo "netns-cluster: $DIR/namespaces exists: a cluster is up or was not taken down; run '$0 down'" >&2
    exit 1
  fi
  lib_build "$BIN"
  mkdir -p "$DIR"
  lib_reachable "$DIR"
  case "$WITNESS" in ''|n1|n2|n3) ;; *) echo "netns-cluster: WITNESS=$WITNESS is not n1, n2 or n3" >&2; exit 2 ;; esac
  printf 'PREFIX=%q\nSUBNET=%q\nBIN=%q\nWITNESS=%q\n' "$PREFIX" "$SUBNET" "$BIN" "$WITNESS" > "$DIR/netns.env"
  create_namespaces
  configure
  local t0=$SECONDS n
  for n in "${NODES[@]}"; do
    lib_spawn "$DIR/$n.pid" "$DIR/$n.log" ip netns exec "$(ns "$n")" "$BIN" serve --config "$DIR/gen/$n/pgquorum.yaml"
  done
  lib_spawn "$DIR/pgbouncer.pid" "$DIR/pgbouncer.log" ip netns exec "$(ns pgb)" \
    setpriv --reuid=postgres --regid=postgres --init-groups "$PGBOUNCER" "$DIR/pgbouncer/pgbouncer.ini"
  lib_spawn "$DIR/bouncer.pid" "$DIR/bouncer.log" ip netns exec "$(ns pgb)" "$BIN" bouncer --config "$DIR/gen/pgb/bouncer.yaml"
  echo "waiting for a primary, $([ -n "$WITNESS" ] && echo "a replica, the witness" || echo "two replicas") and a route through PgBouncer..."
  if ! lib_wait 180 healthy; then
    echo "netns-cluster: not healthy after 180 s" >&2
    exit 1
  fi
  echo "healthy after $((SECONDS - t0)) s"
  status
  cat <<TXT

Namespaces: $(ns hub) (bridge), $(for n in "${NODES[@]}"; do printf '%s=%s ' "$(ns "$n")" "$(addr "$n")"; done)$(ns pgb)=$(addr pgb) (PgBouncer :6432)
Try:
  $0 psql -c 'select inet_server_addr()'
  $0 isolate <the primary>      # then: $0 status
  $0 heal
  $0 down
TXT
}

# roles: each node's role as its HTTP health checks (Patroni's /primary and
# /replica) report it to the PgBouncer namespace, one "NODE ROLE" line each.
# This is what a load balancer sees; `ctl list` shows PostgreSQL's state
# only to callers with a node certificate.
roles() {
  local n role
  for n in "${NODES[@]}"; do
    role=unreachable
    if [ "$n" = "$WITNESS" ]; then http_ok "$n" liveness && role=witness
    elif http_ok "$n" primary; then role=primary
    elif http_ok "$n" replica; then role=replica
    elif in_ns pgb curl -s -o /dev/null --max-time 1 "http://$(addr "$n"):8008/health"; then role=unhealthy
    fi
    echo "$n $role"
  done
}

http_ok() {
  [ "$(in_ns pgb curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$(addr "$1"):8008/$2" || true)" = 200 ]
}

# healthy: one primary, every other PostgreSQL node a replica (the witness
# live), and a query through PgBouncer.
healthy() {
  local r replicas=2
  r=$(roles)
  if [ -n "$WITNESS" ]; then
    replicas=1
    grep -q " witness$" <<< "$r" || return 1
  fi
  [ "$(grep -c ' primary$' <<< "$r")" -eq 1 ] && [ "$(grep -c ' replica$' <<< "$r")" -eq "$replicas" ] &&
    pgb_psql -Atc "select 1" >/dev/null 2>&1
}

status() {
  ctl list || true
  echo
  echo "HTTP health checks:"
  roles
}

# partition NODE...: the named nodes on one side, every other namespace on
# the other. Rules live in a chain of each named node's namespace.
partition() {
  [ $# -gt 0 ] || usage
  local side=" $* " n m other
  for n in "$@"; do addr "$n" >/dev/null; done
  for n in "$@"; do
    in_ns "$n" iptables -w -N "$CHAIN" 2>/dev/null || true
    for m in INPUT OUTPUT; do
      in_ns "$n" iptables -w -C "$m" -j "$CHAIN" 2>/dev/null || in_ns "$n" iptables -w -I "$m" -j "$CHAIN"
    done
    for other in "${NODES[@]}" pgb; do
      [[ $side == *" $other "* ]] && continue
      local target=(-j DROP)
      [ "$PARTITION_TARGET" = REJECT ] && target=(-p tcp -j REJECT --reject-with tcp-reset)
      in_ns "$n" iptables -w -A "$CHAIN" -s "$(addr "$other")" "${target[@]}"
      in_ns "$n" iptables -w -A "$CHAIN" -d "$(addr "$other")" "${target[@]}"
      if [ "$PARTITION_TARGET" = REJECT ]; then
        in_ns "$n" iptables -w -A "$CHAIN" -s "$(addr "$other")" -j DROP
        in_ns "$n" iptables -w -A "$CHAIN" -d "$(addr "$other")" -j DROP
      fi
    done
    echo "$n" >> "$DIR/partitioned"
  done
  echo "partitioned: {$*} | the rest"
}

heal() {
  local n
  for n in "${NODES[@]}"; do
    in_ns "$n" iptables -w -F "$CHAIN" 2>/dev/null || true
  done
  rm -f "$DIR/partitioned"
  echo "healed"
}

down() {
  local n t0=$SECONDS
  # Agents first (stopping an agent never stops PostgreSQL), the fence guards,
  # then the postmasters, each by the PID it recorded.
  lib_stop_pidfile "$DIR"/n*.pid "$DIR"/bouncer.pid "$DIR"/pgbouncer.pid "$DIR"/n*/raft/fence-guard.pid
  for n in "${NODES[@]}"; do lib_stop_postmaster "$DIR/$n/pg"; done
  echo "processes stopped after $((SECONDS - t0)) s"
  # Deleting a namespace removes its veth end (and so the pair), its bridge
  # and its iptables rules; flush the partition chains first all the same.
  if [ -f "$DIR/namespaces" ]; then
    while read -r n; do
      [ -n "$n" ] || continue
      ip netns exec "$n" iptables -w -F "$CHAIN" 2>/dev/null || true
      ip netns del "$n" 2>/dev/null || true
    done < "$DIR/namespaces"
  fi
  rm -rf "$DIR"
  echo "netns cluster down after $((SECONDS - t0)) s"
}

case "${1:-}" in
  up|down|status|roles|ctl|psql|isolate|partition|heal|exec) need_root "$1" ;;
  *) usage ;;
esac
case "$1" in
  up) up ;;
  down) down ;;
  status) need_cluster; status ;;
  roles) need_cluster; roles ;;
  ctl) need_cluster; shift; ctl "$@" ;;
  psql) need_cluster; shift; pgb_psql "$@" ;;
  isolate) [ $# -eq 2 ] || usage; need_cluster; partition "$2" ;;
  partition) shift; need_cluster; partition "$@" ;;
  heal) need_cluster; heal ;;
  exec) need_cluster; [ $# -ge 3 ] || usage; n=$2; shift 2; addr "$n" >/dev/null; in_ns "$n" "$@" ;;
esac
