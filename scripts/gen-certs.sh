#!/usr/bin/env bash
# gen-certs.sh — create a cluster CA and the certificates of pgquorum's mutual TLS
# (see docs/security.md) with openssl.
#   scripts/gen-certs.sh --out DIR [--days N] HOST...
# DIR gets:
#   ca.pem, ca-key.pem                 the cluster CA (keep ca-key.pem offline)
#   node-HOST.pem, node-HOST-key.pem   one per HOST: subject O=pgquorum-node, CN=HOST,
#                                      subjectAltName IP:HOST or DNS:HOST (server and client)
#   admin.pem, admin-key.pem           O=pgquorum-admin     (pgquorum ctl, all verbs)
#   readonly.pem, readonly-key.pem     O=pgquorum-readonly  (pgquorum ctl, read verbs)
#   bouncer.pem, bouncer-key.pem       O=pgquorum-bouncer   (pgquorum bouncer agents)
# Idempotent: existing files are kept, so running it again with more hosts adds their
# certificates under the same CA. Keys are mode 0600.
set -euo pipefail

out="" days=825 hosts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --days) days=${2:?--days needs a number}; shift 2 ;;
    --days=*) days=${1#--days=}; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "gen-certs: unknown option $1" >&2; exit 2 ;;
    *) hosts+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || { echo "usage: $0 --out DIR [--days N] HOST..." >&2; exit 2; }
[ ${#hosts[@]} -gt 0 ] || { echo "gen-certs: name at least one node HOST (IP address or DNS name)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "gen-certs: openssl is missing (apt-get install openssl)" >&2; exit 1; }
case "$days" in ''|*[!0-9]*) echo "gen-certs: --days $days is not a number" >&2; exit 2 ;; esac

mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# key FILE: a new P-256 key, unless FILE exists.
key() {
  [ -f "$1" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

if [ ! -f "$out/ca.pem" ]; then
  key "$out/ca-key.pem"
  openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days" -subj "/O=pgquorum/CN=pgquorum cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.pem"
  echo "gen-certs: created the CA $out/ca.pem"
elif [ ! -f "$out/ca-key.pem" ]; then
  echo "gen-certs: $out/ca.pem exists without ca-key.pem; cannot sign new certificates" >&2
  exit 1
fi
chmod 644 "$out/ca.pem"

# issue NAME SUBJECT USAGE [SAN]: NAME.pem and NAME-key.pem signed by the CA.
issue() {
  local name=$1 subj=$2 usage=$3 san=${4:-}
  if [ -f "$out/$name.pem" ]; then
    echo "gen-certs: $out/$name.pem exists; kept"
    return
  fi
  key "$out/$name-key.pem"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } > "$tmp/$name.ext"
  openssl req -new -key "$out/$name-key.pem" -subj "$subj" -out "$tmp/$name.csr"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$days" \
    -extfile "$tmp/$name.ext" -out "$out/$name.pem" 2>/dev/null
  chmod 644 "$out/$name.pem"
  echo "gen-certs: created $out/$name.pem ($subj)"
}

for h in "${hosts[@]}"; do
  case "$h" in
    *[!0-9A-Za-z.:_-]*) echo "gen-certs: $h is not a host name or IP address" >&2; exit 2 ;;
  esac
  if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then san="IP:$h"; else san="DNS:$h"; fi
  issue "node-$h" "/O=pgquorum-node/CN=$h" "serverAuth,clientAuth" "$san"
done
issue admin "/O=pgquorum-admin/CN=admin" clientAuth
issue readonly "/O=pgquorum-readonly/CN=readonly" clientAuth
issue bouncer "/O=pgquorum-bouncer/CN=bouncer" clientAuth
