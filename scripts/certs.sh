#!/usr/bin/env bash
# Makes the certificates novamesh's TLS uses, with openssl, in one directory:
#
#   ca.pem, ca-key.pem                  the certificate authority that signs the rest
#   controller.pem, controller-key.pem  the controller's server certificate (gRPC API
#                                       and agent listener)
#   nats.pem, nats-key.pem              a server certificate for nats-server
#                                       (SANs localhost and 127.0.0.1)
#   volumes.pem, volumes-key.pem        a server certificate for this machine's
#                                       volume exports (NBD over TLS; SANs
#                                       localhost and 127.0.0.1)
#   agent-<host>.pem, agent-<host>-key.pem
#                                       an agent's client certificate (CN and DNS
#                                       SAN: the host name the agent says Hello as)
#
#   bash scripts/certs.sh [--dir DIR] [--san NAME]... [--agent HOST]... [--renew] [--renew-ca]
#
# --dir       where (default .state/tls, or NOVAMESH_TLS_DIR)
# --san       a name or IP address the controller is reached at; replaces the
#             default list (localhost, 127.0.0.1, ::1 and this machine's host
#             names); may be given more than once (or NOVAMESH_TLS_SANS,
#             space separated)
# --agent     make a client certificate for this agent host; may be given
#             more than once
# --renew     new keys and certificates for the controller, NATS and the
#             agents named, signed by the existing CA
# --renew-ca  a new CA, and everything above signed by it
#
# Idempotent: what exists, is signed by the CA, names what was asked and
# is valid for 30 days more is kept. Private keys are 0600 (the directory
# 0700); keys are ECDSA P-256. Prints what it made and what it kept.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${NOVAMESH_TLS_DIR:-.state/tls}
read -r -a SANS <<<"${NOVAMESH_TLS_SANS:-}"
FLAG_SANS=()
AGENTS=()
RENEW=0
RENEW_CA=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=${2:?--dir needs a directory}; shift 2 ;;
    --san) FLAG_SANS+=("${2:?--san needs a name}"); shift 2 ;;
    --agent) AGENTS+=("${2:?--agent needs a host name}"); shift 2 ;;
    --renew) RENEW=1; shift ;;
    --renew-ca) RENEW_CA=1; RENEW=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "certs: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ "${#FLAG_SANS[@]}" -eq 0 ] || SANS=("${FLAG_SANS[@]}")
command -v openssl >/dev/null || { echo "certs: openssl is missing (apt-get install openssl)" >&2; exit 1; }
if [ "${#SANS[@]}" -eq 0 ]; then
  SANS=(localhost 127.0.0.1 ::1)
  for h in "$(hostname -s 2>/dev/null || true)" "$(hostname 2>/dev/null || true)" "$(hostname -f 2>/dev/null || true)"; do
    [ -n "$h" ] && [[ " ${SANS[*]} " != *" $h "* ]] && SANS+=("$h")
  done
fi
for a in "${AGENTS[@]+"${AGENTS[@]}"}"; do
  [[ "$a" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$ ]] || { echo "certs: --agent $a is not a host name" >&2; exit 2; }
done

mkdir -p "$DIR"
chmod 700 "$DIR"
umask 077
say() { echo "certs: $*"; }

# san_ext NAME...: the subjectAltName value for these names (IP or DNS).
san_ext() {
  local out=() n
  for n in "$@"; do
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then out+=("IP:$n"); else out+=("DNS:$n"); fi
  done
  local IFS=,
  echo "${out[*]}"
}

# current CERT NAME...: true when CERT exists with its key, is signed by the
# CA, is valid for 30 days more and names every NAME.
current() {
  local cert=$1; shift
  local key=${cert%.pem}-key.pem
  [ -s "$cert" ] && [ -s "$key" ] || return 1
  openssl verify -CAfile "$DIR/ca.pem" "$cert" >/dev/null 2>&1 || return 1
  openssl x509 -in "$cert" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 || return 1
  local have n
  have=$(openssl x509 -in "$cert" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' ')
  for n in "$@"; do
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then
      # openssl prints IPv6 addresses in full; compare IPv4 only, and "::1" as printed.
      [ "$n" = ::1 ] && n=0:0:0:0:0:0:0:1
      [[ ",$have," == *",IPAddress:$n,"* ]] || return 1
    else
      [[ ",$have," == *",DNS:$n,"* ]] || return 1
    fi
  done
}

made=()
kept=()

if [ "$RENEW_CA" = 1 ] || [ ! -s "$DIR/ca.pem" ] || [ ! -s "$DIR/ca-key.pem" ] || ! openssl x509 -in "$DIR/ca.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DIR/ca-key.pem" 2>/dev/null
  openssl req -x509 -new -key "$DIR/ca-key.pem" -sha256 -days 3650 -subj "/O=novamesh/CN=novamesh CA $(date -u +%Y-%m-%d)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$DIR/ca.pem"
  made+=("$DIR/ca.pem (CA, 10 years; key $DIR/ca-key.pem)")
  RENEW=1
else
  kept+=("$DIR/ca.pem")
fi

# issue NAME CN EKU SAN...: NAME.pem and NAME-key.pem, signed by the CA, for one year.
issue() {
  local name=$1 cn=$2 eku=$3; shift 3
  local cert=$DIR/$name.pem key=$DIR/$name-key.pem
  if [ "$RENEW" = 0 ] && current "$cert" "$@"; then
    kept+=("$cert")
    return
  fi
  local ext
  ext=$(mktemp)
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$eku" "$(san_ext "$@")" >"$ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key.new" 2>/dev/null
  openssl req -new -key "$key.new" -subj "/O=novamesh/CN=$cn" -out "$cert.csr" 2>/dev/null
  openssl x509 -req -in "$cert.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca-key.pem" -CAcreateserial -CAserial "$DIR/ca.srl" \
    -days 365 -sha256 -extfile "$ext" -out "$cert.new" 2>/dev/null
  rm -f "$cert.csr" "$ext"
  chmod 600 "$key.new"
  chmod 644 "$cert.new"
  mv "$key.new" "$key"
  mv "$cert.new" "$cert"
  made+=("$cert ($cn, $(san_ext "$@"); key $key)")
}

issue controller "${SANS[0]}" serverAuth "${SANS[@]}"
issue nats localhost serverAuth localhost 127.0.0.1
issue volumes localhost serverAuth localhost 127.0.0.1
for a in "${AGENTS[@]+"${AGENTS[@]}"}"; do
  issue "agent-$a" "$a" clientAuth "$a"
done
chmod 644 "$DIR/ca.pem"

for m in "${made[@]+"${made[@]}"}"; do say "made $m"; done
for k in "${kept[@]+"${kept[@]}"}"; do say "kept $k"; done
