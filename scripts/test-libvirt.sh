#!/usr/bin/env bash
# The libvirt driver on real hypervisors: two libvirtds on this machine
# (scripts/libvirtd-hosts.sh; qemu, TCG where KVM is unusable) and the tiny
# test guest (scripts/build-test-guest.sh, kept in NOVAMESH_TEST_GUEST,
# default /tmp/novamesh-test-guest). Runs the driver's live migration,
# interface hot-plug and volume tests (a file volume backend's NBD exports
# over TLS opened by qemu with host A's client certificate, and refused
# with it when made for host B; a guest with a volume live-migrated from A
# to B, B opening the export made for it), and a real guest through the whole stack:
# CreateServer → scheduler → NATS → agent → libvirt, its power actions, a
# snapshot, a live migration, delete; then real guests on flat networks with
# the linux network driver (DHCP, security group rules, a hot-plugged NIC, a
# live migration to host B, whose network is its own namespace, and back);
# and a volume through the whole stack: a file volume host (its export
# daemons' certificate from the hosts' NBD CA, listening on A's underlay
# address) serving one volume to a guest on host A, then on host B, deleted
# with B's server.
# Installs what is missing; starts the daemons when they are not running and
# leaves them running (scripts/libvirtd-hosts.sh down stops them).
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_update_notifier=false
bash scripts/ensure-services.sh
bash scripts/setup-libvirt.sh
[ -f agent/drivers/libvirt/binding/build/Release/novamesh_libvirt.node ] || {
  out=$(npm run -s build:libvirt 2>&1) || { echo "$out"; exit 1; }
}
echo "== two libvirtds"
hosts=$(bash scripts/libvirtd-hosts.sh up)
echo "$hosts"
A=$(sed -n 's/^A=//p' <<<"$hosts")
B=$(sed -n 's/^B=//p' <<<"$hosts")
B_NETNS=$(sed -n 's/^B_NETNS=//p' <<<"$hosts")
A_NAME=$(sed -n 's/^A_NAME=//p' <<<"$hosts")
NBD_CA=$(sed -n 's/^NBD_CA=//p' <<<"$hosts")
[ -n "$A" ] && [ -n "$B" ] && [ -n "$B_NETNS" ] && [ -n "$A_NAME" ] && [ -n "$NBD_CA" ] ||
  { echo "test-libvirt: libvirtd-hosts.sh did not name both hosts, B's network namespace, A's name and the NBD CA" >&2; exit 1; }
GUEST=${NOVAMESH_TEST_GUEST:-/tmp/novamesh-test-guest}
# Built again when scripts/build-test-guest.sh is newer than the guest (it skips a fresh one).
echo "== test guest"
bash scripts/build-test-guest.sh "$GUEST"
export NOVAMESH_LIBVIRT_A=$A NOVAMESH_LIBVIRT_B=$B NOVAMESH_LIBVIRT_B_NETNS=$B_NETNS NOVAMESH_TEST_GUEST=$GUEST NOVAMESH_LIBVIRT_REQUIRED=1
export NOVAMESH_LIBVIRT_A_NAME=$A_NAME NOVAMESH_LIBVIRT_B_NAME=$(sed -n 's/^B_NAME=//p' <<<"$hosts") NOVAMESH_NBD_CA=$NBD_CA
# First alone: the driver on both hosts, a libvirtd restarted under it, interface hot-plug.
echo "== live migration, a libvirtd restart, interface hot-plug (qemu)"
node --import tsx --test --test-concurrency=1 agent/drivers/libvirt/libvirt-qemu.test.ts
# Then two files at a time (their guests, domains, volume ports and networks are their own; the
# longest first, so the others run beside it).
echo "== volumes over NBD with TLS (attached, and moving with live and cold migrations), a real guest, real guests on a network and a volume on real guests (qemu), two at a time"
node --import tsx --test --test-concurrency=2 agent/drivers/libvirt/libvirt-volumes.test.ts \
  test/libvirt-volumes.test.ts test/libvirt-qemu.test.ts test/libvirt-network.test.ts \
  agent/drivers/libvirt/libvirt-volume-moves.test.ts
