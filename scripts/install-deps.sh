#!/usr/bin/env bash
# install-deps.sh — make sure this machine has what pgquorum's tests and demo
# run: PostgreSQL 15 and PgBouncer from Debian's packages (plus iptables and
# iproute2 for the fault tests, openssl for scripts/gen-certs.sh, protoc from
# protobuf-compiler for `make proto`; its Go plugins come from `make tools`).
# Idempotent: installs only what is missing.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
need=()
[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/pg_rewind" ] || need+=(postgresql-15 postgresql-client-15)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)

if [ ${#need[@]} -eq 0 ]; then
  echo "install-deps: PostgreSQL 15, PgBouncer, protoc and tools already present"
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root (or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's packages start a default cluster and a pgbouncer service; the
  # tests never use them, and a policy-rc.d keeps them from starting.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The postgres OS user runs PostgreSQL and PgBouncer in tests and the demo.
if ! id postgres >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
fi
