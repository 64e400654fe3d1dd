#!/usr/bin/env bash
# Installs what building and testing the libvirt binding and driver
# (agent/drivers/libvirt) needs from Debian's packages: libvirt's headers and
# library (libvirt-dev; libvirt0 carries the built-in test:/// driver the
# tests use, so no daemon is needed), qemu-img and qemu-io (qemu-utils) for
# instance disks and volumes, qemu-storage-daemon (qemu-system-common) for
# the volume backend's exports, xorriso for config drives, pkg-config and a
# C++ toolchain; and ssh-keygen (openssh-client), which the key pair tests
# check the controller's keys against. Calls apt-get only when something is
# missing; quiet; safe to run again. LIBVIRT_SETUP_CLIENTS=1 also installs virsh (libvirt-clients).
set -euo pipefail

packages=(libvirt-dev qemu-utils qemu-system-common xorriso openssh-client pkg-config g++ make python3)
if [ "${LIBVIRT_SETUP_CLIENTS:-0}" = "1" ]; then packages+=(libvirt-clients); fi

. "$(dirname "$0")/apt-missing.sh"
apt_install_missing setup-libvirt "${packages[@]}"

if ! pkg-config --exists libvirt; then
  echo "setup-libvirt: pkg-config does not find libvirt after installing libvirt-dev" >&2
  exit 1
fi
