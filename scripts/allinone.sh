#!/usr/bin/env bash
# The all-in-one: a controller and one agent on this machine, with MariaDB and
# NATS started (or installed) when missing. Ctrl-C stops both.
#
#   NOVAMESH_ADMIN_TOKEN   admin token (default: generated once, kept in .state/admin-token)
#   NOVAMESH_LISTEN        gRPC address (default 127.0.0.1:8774)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules/@grpc/grpc-js ] || npm ci --no-audit --no-fund
bash scripts/ensure-services.sh

mkdir -p .state
if [ -z "${NOVAMESH_ADMIN_TOKEN:-}" ]; then
  [ -s .state/admin-token ] || head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > .state/admin-token
  NOVAMESH_ADMIN_TOKEN=$(cat .state/admin-token)
fi
export NOVAMESH_ADMIN_TOKEN
export NOVAMESH_LISTEN=${NOVAMESH_LISTEN:-127.0.0.1:8774}
HOST=${NOVAMESH_HOST:-$(hostname -s 2>/dev/null || hostname)}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

npx tsx controller/main.ts >> .state/controller.log 2>&1 &
pids+=($!)
port=${NOVAMESH_LISTEN##*:}
for _ in $(seq 1 120); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.25; done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "controller did not start; see .state/controller.log" >&2; tail -5 .state/controller.log >&2; exit 1; }
# The libvirt driver when libvirtd answers at NOVAMESH_LIBVIRT_URI
# (default qemu:///system), the fake driver otherwise; the script says which.
LIBVIRT_URI=${NOVAMESH_LIBVIRT_URI:-qemu:///system}
if command -v virsh >/dev/null && virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; then
  bash scripts/setup-libvirt.sh
  [ -f agent/drivers/libvirt/binding/build/Release/novamesh_libvirt.node ] || npm run -s build:libvirt >/dev/null
  # The demo image is the tiny test guest (a Debian kernel and a busybox
  # initramfs): built once, uploaded through ImageService into the controller's
  # image bucket, which the agent fetches from.
  [ -s .state/test-guest/disk.qcow2 ] || bash scripts/build-test-guest.sh .state/test-guest
  npx tsx scripts/seed-demo.ts "127.0.0.1:$port" --guest .state/test-guest
  echo "agent driver: libvirt ($LIBVIRT_URI); the demo image boots the test guest (GetConsoleOutput shows it)"
  npx tsx agent/main.ts --controller "127.0.0.1:$port" --token "$NOVAMESH_ADMIN_TOKEN" --host "$HOST" \
    --driver libvirt --libvirt-uri "$LIBVIRT_URI" --image-bucket "${NOVAMESH_IMAGE_BUCKET:-novamesh-images}" >> .state/agent.log 2>&1 &
else
  npx tsx scripts/seed-demo.ts "127.0.0.1:$port"
  echo "agent driver: fake (libvirtd not reachable at $LIBVIRT_URI; simulated hypervisor: 16 vCPUs, 64 GiB, 1 TiB)"
  npx tsx agent/main.ts --controller "127.0.0.1:$port" --token "$NOVAMESH_ADMIN_TOKEN" --host "$HOST" \
    --driver fake --vcpus 16 --memory-mb 65536 --disk-gb 1024 >> .state/agent.log 2>&1 &
fi
pids+=($!)

cat <<EOT

novamesh all-in-one is running
  gRPC API     127.0.0.1:$port (reflection and health enabled)
  admin token  $NOVAMESH_ADMIN_TOKEN
  logs         .state/controller.log, .state/agent.log

  export TOKEN=$NOVAMESH_ADMIN_TOKEN   # then try the README's grpcurl examples
Ctrl-C stops it.
EOT
wait -n "${pids[@]}"
echo "a process exited; stopping (see .state/*.log)" >&2
