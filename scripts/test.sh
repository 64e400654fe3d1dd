#!/usr/bin/env bash
# The test command: services up, proto lint, generated code current, types,
# Debian's packages for the SDK tests (scripts/setup-sdk.sh) and the network
# driver (scripts/setup-network.sh), the libvirt
# binding build, unit tests, integration tests against the real
# MariaDB and NATS, then the libvirt driver on two real libvirtds with a real
# guest (scripts/test-libvirt.sh; NOVAMESH_TEST_LIBVIRT=0 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_update_notifier=false
bash scripts/ensure-services.sh
bash scripts/setup-libvirt.sh
bash scripts/setup-network.sh
bash scripts/setup-sdk.sh
echo "== libvirt binding"; out=$(npm run -s build:libvirt 2>&1) || { echo "$out"; exit 1; }
# The libvirt tests skip without the addon elsewhere; here it was just built.
export LIBVIRT_BINDING_REQUIRED=1
# The SDK tests (Python and Go clients) skip without Debian's packages elsewhere; here they were just installed.
export NOVAMESH_SDK_REQUIRED=1
# promtool checks the controller's metrics (taken from Debian's prometheus package, not installed).
NOVAMESH_PROMTOOL=$(bash scripts/setup-promtool.sh)
export NOVAMESH_PROMTOOL NOVAMESH_PROMTOOL_REQUIRED=1
# The volume backend's tests (qemu-img, qemu-io, qemu-storage-daemon) likewise.
export NOVAMESH_VOLUME_TOOLS_REQUIRED=1
# And the network driver's (root, ip netns, nft, dnsmasq, busybox, conntrack, python3).
export NOVAMESH_NETWORK_TOOLS_REQUIRED=1
echo "== buf lint"; npx buf lint 2>/dev/null
echo "== gen/ is current"; bash scripts/check-gen.sh
echo "== typecheck"; npx tsc -p tsconfig.json
echo "== unit tests"; npm run -s test:unit
echo "== integration tests"; npm run -s test:integration
if [ "${NOVAMESH_TEST_LIBVIRT:-1}" != "0" ]; then bash scripts/test-libvirt.sh; fi
