#!/usr/bin/env bash
# The all-in-one: a controller and one agent on this machine, with MariaDB and
# NATS started (or installed) when missing, and the README's demo image.
#
#   bash scripts/allinone.sh [--libvirt | --fake] [--plaintext]
#
# --libvirt (the default) runs real guests: libvirtd with qemu is installed
# and started when it does not answer (scripts/libvirtd-hosts.sh up-a; needs
# root), and the demo image is the tiny test guest (scripts/build-test-guest.sh),
# so the README's web-1 boots and GetConsoleOutput shows it. --fake uses the
# simulated hypervisor (16 vCPUs, 64 GiB, 1 TiB) with the same demo image.
# Switching between the two needs nothing else: each keeps its own cloud
# (database, ops stream, image bucket), found again as it was left. Ctrl-C or SIGTERM stops
# everything the script started; so does any failure while starting.
#
# Network: the controller gets a shared flat network "public" on the bridge
# novamesh0, subnet 10.42.0.0/24, gateway 10.42.0.1, servers' addresses
# from 10.42.0.10-10.42.0.250 (scripts/seed-network.ts; with either driver).
# With --libvirt the script also installs what the agent's linux network
# driver needs (scripts/setup-network.sh) and iputils-ping (jq with either
# driver, for the README's examples), makes the bridge
# novamesh0 on this machine when it is missing and gives it 10.42.0.1/24
# when it lacks it (needs root or sudo), so this machine reaches the guests
# at their addresses. The bridge stays when the script stops (the guests
# keep running on it); `ip link del novamesh0` removes it.
#
# TLS: scripts/certs.sh makes (once) a CA and certificates in .state/tls;
# the controller serves the API with TLS on NOVAMESH_LISTEN (clients verify
# it with .state/tls/ca.pem) and agents on an agent listener that requires
# their client certificate (NOVAMESH_AGENT_LISTEN). --plaintext runs both
# without TLS on NOVAMESH_LISTEN alone (development only).
#
#   NOVAMESH_DRIVER        libvirt (default) or fake; the flags win
#   NOVAMESH_ADMIN_TOKEN   admin token (default: generated once, kept in .state/admin-token)
#   NOVAMESH_LISTEN        gRPC address (default 127.0.0.1:8774)
#   NOVAMESH_AGENT_LISTEN  the agents' gRPC address, mutual TLS (default 127.0.0.1:8775)
#   NOVAMESH_METRICS_LISTEN  the controller's Prometheus metrics, plain HTTP GET /metrics (default 127.0.0.1:9180)
#   NOVAMESH_AGENT_METRICS_LISTEN  the agent's (default 127.0.0.1:9181)
#   NOVAMESH_PLAINTEXT     1: as --plaintext
#   NOVAMESH_DATABASE_URL  the controller's database (default novamesh on this machine's MariaDB, over
#                          its socket /run/mysqld/mysqld.sock where there is one, else 127.0.0.1:3306;
#                          novamesh_fake with the fake driver: each driver keeps a cloud of its own)
#   NOVAMESH_LIBVIRT_URI   libvirt driver: where libvirtd answers (default qemu:///system)
#   NOVAMESH_NATS_PORT     the all-in-one's own nats-server, which requires
#                          credentials (default 4223; keys in .state/nats)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "allinone: $*"; }
die() { echo "allinone: $*" >&2; exit 1; }

DRIVER=${NOVAMESH_DRIVER:-libvirt}
case "${NOVAMESH_PLAINTEXT:-}" in 1 | true | yes) PLAINTEXT=1 ;; *) PLAINTEXT=0 ;; esac
for arg in "$@"; do
  case "$arg" in
    --libvirt) DRIVER=libvirt ;;
    --fake) DRIVER=fake ;;
    --plaintext) PLAINTEXT=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--libvirt | --fake] [--plaintext]" >&2; exit 2 ;;
  esac
done
case "$DRIVER" in libvirt | fake) ;; *) die "NOVAMESH_DRIVER must be libvirt or fake, not '$DRIVER'" ;; esac

export NOVAMESH_LISTEN=${NOVAMESH_LISTEN:-127.0.0.1:8774}
# Each driver keeps a cloud of its own: servers the fake driver "runs" do not
# exist under libvirt (nor the reverse), so the fake driver's all-in-one has
# its own database, ops stream and image bucket, and switching back and forth
# finds each as it was left.
if [ "$DRIVER" = fake ]; then world=_fake; else world=; fi
# MariaDB on this machine is reached over its Unix socket where it has one:
# far less CPU per statement, on both sides, than loopback TCP.
if [ -S /run/mysqld/mysqld.sock ]; then
  default_db="mysql://root@localhost/novamesh$world?socketPath=/run/mysqld/mysqld.sock"
else
  default_db="mysql://root@127.0.0.1:3306/novamesh$world"
fi
export NOVAMESH_DATABASE_URL=${NOVAMESH_DATABASE_URL:-$default_db}
export NOVAMESH_OPS_STREAM=${NOVAMESH_OPS_STREAM:-NOVAMESH_OPS${world^^}}
export NOVAMESH_OPS_SUBJECT_PREFIX=${NOVAMESH_OPS_SUBJECT_PREFIX:-novamesh${world/_/.}.ops}
export NOVAMESH_IMAGE_BUCKET=${NOVAMESH_IMAGE_BUCKET:-novamesh-images${world/_/-}}
# One host: a resize stays on it (cold and live migration need a second host).
export NOVAMESH_ALLOW_RESIZE_TO_SAME_HOST=${NOVAMESH_ALLOW_RESIZE_TO_SAME_HOST:-1}
port=${NOVAMESH_LISTEN##*:}
address=127.0.0.1:$port
agent_listen=${NOVAMESH_AGENT_LISTEN:-127.0.0.1:8775}
agent_port=${agent_listen##*:}
export NOVAMESH_METRICS_LISTEN=${NOVAMESH_METRICS_LISTEN:-127.0.0.1:9180}
metrics_port=${NOVAMESH_METRICS_LISTEN##*:}
export NOVAMESH_AGENT_METRICS_LISTEN=${NOVAMESH_AGENT_METRICS_LISTEN:-127.0.0.1:9181}
agent_metrics_port=${NOVAMESH_AGENT_METRICS_LISTEN##*:}
TLS=.state/tls
HOST=${NOVAMESH_HOST:-$(hostname -s 2>/dev/null || hostname)}
LIBVIRT_URI=${NOVAMESH_LIBVIRT_URI:-qemu:///system}
# The operator's bridge of the network "public" (scripts/seed-network.ts) and this machine's address on it.
BRIDGE=novamesh0
BRIDGE_ADDRESS=10.42.0.1/24
mkdir -p .state

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# One all-in-one at a time: a previous one still running (its process groups
# are in .state/allinone.pgids) or anything else on the port stops this one.
if [ -s .state/allinone.pgids ]; then
  alive=()
  for g in $(cat .state/allinone.pgids); do
    kill -0 -- "-$g" 2>/dev/null && alive+=("-$g")
  done
  if [ "${#alive[@]}" -gt 0 ]; then
    g=${alive[0]#-}
    die "a previous all-in-one is still running (${#alive[@]} process groups, e.g. $(ps -o args= -p "$g" 2>/dev/null | cut -c1-60)); stop it first (Ctrl-C where it runs, or: kill -- ${alive[*]})"
  fi
fi
ports=("$port" "$metrics_port" "$agent_metrics_port")
[ "$PLAINTEXT" = 1 ] || ports+=("$agent_port")
for p in "${ports[@]}"; do
  if port_open "$p"; then
    who=$(ss -ltnpH "sport = :$p" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
    var=NOVAMESH_LISTEN
    [ "$p" = "$agent_port" ] && var=NOVAMESH_AGENT_LISTEN
    [ "$p" = "$metrics_port" ] && var=NOVAMESH_METRICS_LISTEN
    [ "$p" = "$agent_metrics_port" ] && var=NOVAMESH_AGENT_METRICS_LISTEN
    die "something already listens on 127.0.0.1:$p${who:+ (pid $who: $(ps -o args= -p "$who" 2>/dev/null | cut -c1-80))}; a previous all-in-one? Stop it first${who:+ (kill $who)}, or set $var"
  fi
done

# Everything that runs in the background gets its own process group (setsid),
# recorded here and in .state/allinone.pgids; leaving, for whatever reason,
# stops every group (TERM, then KILL after 10 s). Should this script itself be
# killed (SIGKILL: no trap runs), the kernel sends each process it started a
# TERM (setpriv --pdeathsig), and the next run finds any group left over.
groups=()
record() { printf '%s\n' "${groups[@]}" >.state/allinone.pgids; }
cleanup() {
  local g alive i
  trap - EXIT INT TERM
  [ "${#groups[@]}" -gt 0 ] || { rm -f .state/allinone.pgids; return 0; }
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    alive=0
    for g in "${groups[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  rm -f .state/allinone.pgids
  say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# spawn CMD...: runs CMD in the background in a process group of its own; sets $spawned.
spawn() {
  setsid setpriv --pdeathsig TERM -- "$@" &
  spawned=$!
  groups+=("$spawned")
  record
}
# step CMD...: runs CMD like spawn and waits for it (a signal stops it at once).
step() {
  local rc=0 g
  spawn "$@"
  wait "$spawned" || rc=$?
  local rest=()
  for g in "${groups[@]}"; do [ "$g" = "$spawned" ] || rest+=("$g"); done
  groups=("${rest[@]+"${rest[@]}"}")
  record
  return "$rc"
}

if [ ! -d node_modules/@grpc/grpc-js ]; then
  say "installing the npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi
# The controller and the agent run as in production: compiled JavaScript
# with plain node (incremental: seconds once built).
say "compiling the controller and the agent (npm run build; log: .state/build.log)"
step npm run -s build >.state/build.log 2>&1 || { tail -20 .state/build.log >&2; die "npm run build failed; see .state/build.log"; }
bash scripts/ensure-services.sh
# jq: the README's examples pick values out of grpcurl's answers with it.
. scripts/apt-missing.sh
apt_install_missing allinone jq || die "installing jq failed"

if [ -z "${NOVAMESH_ADMIN_TOKEN:-}" ]; then
  [ -s .state/admin-token ] || head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >.state/admin-token
  NOVAMESH_ADMIN_TOKEN=$(cat .state/admin-token)
fi
export NOVAMESH_ADMIN_TOKEN

if [ "$DRIVER" = libvirt ]; then
  if ! { command -v virsh >/dev/null && timeout 10 virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; }; then
    [ "$LIBVIRT_URI" = qemu:///system ] || die "libvirtd does not answer at $LIBVIRT_URI"
    say "libvirtd does not answer at $LIBVIRT_URI: installing (when missing) and starting it with qemu"
    if [ "$(id -u)" -eq 0 ]; then
      bash scripts/libvirtd-hosts.sh up-a >/dev/null
    elif command -v sudo >/dev/null; then
      sudo bash scripts/libvirtd-hosts.sh up-a >/dev/null
    else
      die "starting libvirtd needs root; run as root, or use the fake driver: bash scripts/allinone.sh --fake"
    fi
  fi
  bash scripts/setup-libvirt.sh
  bash scripts/setup-network.sh
  apt_install_missing allinone iputils-ping || die "installing iputils-ping failed"
  # The bridge of the network "public", with this machine's address on it.
  root=()
  [ "$(id -u)" -eq 0 ] || root=(sudo)
  if ! ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    say "making the bridge $BRIDGE (the network \"public\") on this machine"
    ${root[@]+"${root[@]}"} ip link add "$BRIDGE" type bridge || die "ip link add $BRIDGE type bridge failed"
  fi
  [ -d "/sys/class/net/$BRIDGE/bridge" ] || die "$BRIDGE exists but is not a bridge; remove it (ip link del $BRIDGE) or free the name"
  if ! ip -4 addr show dev "$BRIDGE" | grep -q "inet $BRIDGE_ADDRESS "; then
    say "giving $BRIDGE this machine's address on the network \"public\", $BRIDGE_ADDRESS"
    ${root[@]+"${root[@]}"} ip addr add "$BRIDGE_ADDRESS" dev "$BRIDGE" || die "ip addr add $BRIDGE_ADDRESS dev $BRIDGE failed"
  fi
  ${root[@]+"${root[@]}"} ip link set "$BRIDGE" up || die "ip link set $BRIDGE up failed"
  if [ ! -f agent/drivers/libvirt/binding/build/Release/novamesh_libvirt.node ]; then
    say "building the libvirt binding (node-gyp, about a minute)"
    step npm run -s build:libvirt >.state/build-libvirt.log 2>&1 || { tail -20 .state/build-libvirt.log >&2; die "building the libvirt binding failed; see .state/build-libvirt.log"; }
  fi
fi

# grpc-js names the TLS server by the address even when it is an IP address
# (which Node warns about); the certificates carry 127.0.0.1 as an IP SAN.
export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--disable-warning=DEP0123"
# The controller's, NATS' and this agent's certificates (kept when there),
# or plaintext when asked for.
if [ "$PLAINTEXT" = 1 ]; then
  say "--plaintext: the API and the agent run without TLS; tokens travel in clear text (development only)"
  controller_args=(--plaintext)
  agent_connection=(--controller "$address" --plaintext)
  seed_connection=(--plaintext)
else
  bash scripts/certs.sh --dir "$TLS" --agent "$HOST"
  # qemu's x509 directory for the volume exports (the file backend's NBD server).
  mkdir -p "$TLS/nbd"
  cp "$TLS/ca.pem" "$TLS/nbd/ca-cert.pem"
  cp "$TLS/volumes.pem" "$TLS/nbd/server-cert.pem"
  install -m 600 "$TLS/volumes-key.pem" "$TLS/nbd/server-key.pem"
  if [ "$DRIVER" = libvirt ] && [ "$LIBVIRT_URI" = qemu:///system ]; then
    # qemu opens a volume attached to a guest here with a client certificate
    # of this host's name from the same CA (qemu.conf's nbd_tls_x509_cert_dir;
    # scripts/libvirtd-hosts.sh up-a writes it, and restarts libvirtd only
    # when its configuration changes: running guests stay).
    mkdir -p "$TLS/nbd-ca"
    cp "$TLS/ca.pem" "$TLS/nbd-ca/ca-cert.pem"
    install -m 600 "$TLS/ca-key.pem" "$TLS/nbd-ca/ca-key.pem"
    say "giving libvirtd the client certificate of $HOST for volume exports"
    ${root[@]+"${root[@]}"} env HOST_A_NAME="$HOST" NBD_CA_DIR="$PWD/$TLS/nbd-ca" bash scripts/libvirtd-hosts.sh up-a >/dev/null ||
      die "scripts/libvirtd-hosts.sh up-a failed to give libvirtd its volume client certificate"
  fi
  controller_args=(--tls-cert "$TLS/controller.pem" --tls-key "$TLS/controller-key.pem" --agent-listen "$agent_listen" --agent-client-ca "$TLS/ca.pem")
  agent_connection=(--controller "127.0.0.1:$agent_port" --tls-ca "$TLS/ca.pem" --tls-cert "$TLS/agent-$HOST.pem" --tls-key "$TLS/agent-$HOST-key.pem")
  seed_connection=(--tls-ca "$TLS/ca.pem")
fi

# The bus: a nats-server of the all-in-one's own that refuses anonymous
# connections (scripts/nats-secure.ts; keys and configuration kept in
# .state/nats) and speaks TLS with .state/tls/nats.pem (not with
# --plaintext). The controller connects with its own user and mints the
# agent's; the agent gets nothing but the URL and the CA.
NATS_PORT=${NOVAMESH_NATS_PORT:-4223}
port_open "$NATS_PORT" && die "something already listens on 127.0.0.1:$NATS_PORT (the all-in-one's nats-server); stop it, or set NOVAMESH_NATS_PORT"
nats_tls=()
[ "$PLAINTEXT" = 1 ] || nats_tls=(--tls-cert "$TLS/nats.pem" --tls-key "$TLS/nats-key.pem")
step node --import tsx scripts/nats-secure.ts .state/nats --port "$NATS_PORT" "${nats_tls[@]+"${nats_tls[@]}"}" >/dev/null
say "starting nats-server with credentials${nats_tls[0]:+ and TLS} on 127.0.0.1:$NATS_PORT (log: .state/nats.log)"
spawn "$(command -v nats-server || echo /usr/sbin/nats-server)" -c .state/nats/nats.conf >>.state/nats.log 2>&1
nats=$spawned
for _ in $(seq 1 40); do
  port_open "$NATS_PORT" && break
  kill -0 "$nats" 2>/dev/null || break
  sleep 0.25
done
port_open "$NATS_PORT" || { tail -5 .state/nats.log >&2; die "nats-server did not start; see .state/nats.log"; }
export NOVAMESH_NATS_URL=nats://127.0.0.1:$NATS_PORT
export NOVAMESH_NATS_CREDS=.state/nats/controller.creds
export NOVAMESH_NATS_SIGNING_KEY=.state/nats/account-signing.nk
[ "$PLAINTEXT" = 1 ] || export NOVAMESH_NATS_CA=$TLS/ca.pem

# The demo image is the tiny test guest (a Debian kernel and a busybox
# initramfs), whichever the driver: the fake driver ignores its bytes, the
# libvirt driver boots them. Built once (the script says when it builds).
step bash scripts/build-test-guest.sh .state/test-guest

say "starting the controller on $address (log: .state/controller.log)"
spawn node dist/controller/main.js "${controller_args[@]}" >>.state/controller.log 2>&1
controller=$spawned
for _ in $(seq 1 240); do
  port_open "$port" && break
  kill -0 "$controller" 2>/dev/null || break
  sleep 0.25
done
port_open "$port" || { tail -5 .state/controller.log >&2; die "the controller did not start; see .state/controller.log"; }

# Uploads the demo image unless it is there with its bytes; --database lets it
# replace a demo record that an older version of this script registered
# without bytes.
step node --import tsx scripts/seed-demo.ts "$address" --guest .state/test-guest --database "$NOVAMESH_DATABASE_URL" "${seed_connection[@]}"
# The shared flat network "public" on novamesh0 (kept when there).
step node --import tsx scripts/seed-network.ts "$address" "${seed_connection[@]}"

# The agent speaks with a token of its own, bound to its host (a new one each
# start: the previous one is deleted), not with the admin token.
step node --import tsx scripts/agent-token.ts "$address" --host "$HOST" --out .state/agent-token "${seed_connection[@]}"
NOVAMESH_AGENT_TOKEN=$(cat .state/agent-token)
export NOVAMESH_AGENT_TOKEN
agent_args=("${agent_connection[@]}" --host "$HOST" --state-dir ".state/agent-$HOST$world")
if [ "$DRIVER" = libvirt ]; then
  say "agent driver: libvirt ($LIBVIRT_URI): the demo image boots the test guest, GetConsoleOutput shows it"
  agent_args+=(--driver libvirt --libvirt-uri "$LIBVIRT_URI")
else
  say "agent driver: fake, as asked (a simulated hypervisor: 16 vCPUs, 64 GiB, 1 TiB; nothing boots; bash scripts/allinone.sh runs real guests)"
  agent_args+=(--driver fake --vcpus 16 --memory-mb 65536 --disk-gb 1024)
fi
# The agent is a volume host too: a pool of qcow2 files in .state/volumes
# (20 GiB at most) exported over NBD with TLS, or with the fake driver a
# simulated 1 TiB pool. With --plaintext there is no certificate to export with.
if [ "$DRIVER" = fake ]; then
  volumes="local: fake, 1 TiB"
  agent_args+=(--volume-backend fake --volume-pools local:1T)
elif [ "$PLAINTEXT" = 0 ]; then
  # The guests' disks: for root and the daemons that serve them only.
  mkdir -p .state/volumes
  chmod 700 .state/volumes
  volumes="local: qcow2 files in .state/volumes, 20 GiB at most, NBD over TLS on 127.0.0.1"
  agent_args+=(--volume-backend file --volume-pools "local=$PWD/.state/volumes:20G" --volume-tls-dir "$TLS/nbd")
else
  volumes="none (--plaintext: no certificate for the exports)"
fi
log_from=$(stat -c %s .state/agent.log 2>/dev/null || echo 0)
spawn env -u NOVAMESH_ADMIN_TOKEN -u NOVAMESH_NATS_CREDS -u NOVAMESH_NATS_SIGNING_KEY node dist/agent/main.js "${agent_args[@]}" >>.state/agent.log 2>&1
agent=$spawned
for _ in $(seq 1 240); do
  tail -c +"$((log_from + 1))" .state/agent.log 2>/dev/null | grep -q '"connected to the controller"' && break
  kill -0 "$agent" 2>/dev/null || { tail -5 .state/agent.log >&2; die "the agent stopped; see .state/agent.log"; }
  sleep 0.25
done
tail -c +"$((log_from + 1))" .state/agent.log | grep -q '"connected to the controller"' || die "the agent did not reach the controller in 60 s; see .state/agent.log"

if [ "$PLAINTEXT" = 1 ]; then
  api="$address, plaintext (reflection and health enabled)"
  try="grpcurl -plaintext $address list"
else
  api="$address, TLS (CA .state/tls/ca.pem; reflection and health enabled)
  agents       $agent_listen, mutual TLS (client certificates .state/tls/agent-<host>.pem)"
  try="grpcurl -cacert .state/tls/ca.pem $address list"
fi
cat <<EOT

novamesh all-in-one is running ($DRIVER driver, host $HOST)
  gRPC API     $api
  network      public: flat on $BRIDGE, 10.42.0.0/24, gateway 10.42.0.1 (with the libvirt driver this machine has 10.42.0.1 on it)
  volume pool  $volumes
  NATS         $NOVAMESH_NATS_URL (credentials only: .state/nats${NOVAMESH_NATS_CA:+; TLS, CA $NOVAMESH_NATS_CA})
  admin token  $NOVAMESH_ADMIN_TOKEN
  metrics      http://$NOVAMESH_METRICS_LISTEN/metrics (controller), http://$NOVAMESH_AGENT_METRICS_LISTEN/metrics (agent)
  logs         .state/controller.log, .state/agent.log, .state/nats.log

  export TOKEN=$NOVAMESH_ADMIN_TOKEN   # then try the README's grpcurl examples
  $try
Ctrl-C stops it.
EOT
wait -n "$controller" "$agent" "$nats" || true
echo "allinone: a process exited; stopping (see .state/controller.log, .state/agent.log)" >&2
exit 1
