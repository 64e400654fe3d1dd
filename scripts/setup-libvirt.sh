#!/usr/bin/env bash
# Installs what building and testing the libvirt binding and driver
# (agent/drivers/libvirt) needs from Debian's packages: libvirt's headers and
# library (libvirt-dev; libvirt0 carries the built-in test:/// driver the
# tests use, so no daemon is needed), qemu-img (qemu-utils) for instance
# disks, pkg-config and a C++ toolchain. Calls apt-get only when something is missing; quiet; safe to
# run again. LIBVIRT_SETUP_CLIENTS=1 also installs virsh (libvirt-clients).
set -euo pipefail

packages=(libvirt-dev qemu-utils pkg-config g++ make python3)
if [ "${LIBVIRT_SETUP_CLIENTS:-0}" = "1" ]; then packages+=(libvirt-clients); fi

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup-libvirt: installing ${missing[*]} from Debian's packages"
  log=$(mktemp)
  # A progress line every few packages; the whole output only on failure.
  if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"; } 2>&1 |
    tee "$log" | awk -v p="setup-libvirt" '
      / newly installed/ { n = $3; print p ": " n " packages to install"; fflush() }
      /^Need to get / { print p ": n" substr($0, 2); fflush() }
      /^Get:/ { g++; if (g % 20 == 0) { print p ": downloaded " g (n ? "/" n : ""); fflush() } }
      /^Setting up / { s++; if (s % 20 == 0 || s == n) { print p ": set up " s (n ? "/" n : ""); fflush() } }'; then
    cat "$log" >&2; rm -f "$log"; echo "setup-libvirt: installing ${missing[*]} failed" >&2; exit 1
  fi
  rm -f "$log"
fi

if ! pkg-config --exists libvirt; then
  echo "setup-libvirt: pkg-config does not find libvirt after installing libvirt-dev" >&2
  exit 1
fi
