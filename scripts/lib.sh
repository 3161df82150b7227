# shellcheck shell=bash
# lib.sh — shell functions shared by demo.sh and netns-cluster.sh. Source it;
# it defines functions only and changes nothing by itself.
#
# Conventions of both scripts: one state directory holds configs, data, logs
# (NAME.log) and PID files (NAME.pid); every process is started with a PID
# file and stopped by that PID, never by name.

# lib_build BIN: install PostgreSQL 15, PgBouncer and the tools if missing,
# then build the pgquorum binary into BIN. With NO_BUILD=1, BIN is used as
# it is (an installed binary, or one a test built).
lib_build() {
  local bin=$1
  scripts/install-deps.sh
  if [ "${NO_BUILD:-}" = 1 ]; then
    [ -x "$bin" ] || { echo "NO_BUILD=1, but $bin is not an executable" >&2; return 1; }
    return 0
  fi
  mkdir -p "$(dirname "$bin")"
  go build -o "$bin" ./cmd/pgquorum
}

# lib_reachable DIR: PostgreSQL and PgBouncer run as the postgres user; let
# them enter DIR and every directory above it.
lib_reachable() {
  local d=$1
  chmod 755 "$d"
  while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
}

# lib_running PIDFILE: true when PIDFILE names a live process.
lib_running() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# lib_spawn PIDFILE LOG CMD...: start CMD in the background with its output
# appended to LOG, and record its PID. CMD must exec its program (as
# `ip netns exec` and `setpriv` do) so that the PID is the program's.
lib_spawn() {
  local pidfile=$1 log=$2
  shift 2
  nohup "$@" >> "$log" 2>&1 &
  echo $! > "$pidfile"
}

# lib_stop_pidfile FILE...: stop the processes the PID files name, all at
# once (SIGTERM, up to 5 s, then SIGKILL), then remove the files.
lib_stop_pidfile() {
  local f pid pids=() files=()
  for f in "$@"; do
    [ -f "$f" ] || continue
    files+=("$f")
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  for _ in $(seq 1 50); do
    lib_any_alive "${pids[@]}" || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 20); do
    lib_any_alive "${pids[@]}" || break
    sleep 0.1
  done
  rm -f "${files[@]}"
}

# lib_any_alive PID...: true while one of the processes exists.
lib_any_alive() {
  local pid
  for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}

# lib_stop_postmaster DATADIR: stop the postmaster of DATADIR (immediate
# shutdown, SIGQUIT) by the PID in its postmaster.pid, and wait up to 5 s.
lib_stop_postmaster() {
  local pidf=$1/postmaster.pid pid
  [ -f "$pidf" ] || return 0
  pid=$(head -1 "$pidf")
  kill -QUIT "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# lib_wait SECONDS CMD...: run CMD every 0.5 s until it succeeds; false
# after SECONDS.
lib_wait() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# lib_count_running N CTL...: true when `CTL list` shows N members running.
lib_count_running() {
  local n=$1
  shift
  [ "$("$@" list 2>/dev/null | grep -c "running")" -eq "$n" ]
}
