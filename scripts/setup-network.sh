#!/usr/bin/env bash
# Installs what the agent's linux network driver (agent/network/linux) and
# its tests need from Debian's packages: dnsmasq (dnsmasq-base: the binary
# only, no system service), nftables, iproute2, conntrack (deleting the
# connection entries of rules a port no longer has), and busybox-static
# (udhcpc, ping and nc in the tests' simulated guests). Calls apt-get only when
# something is missing; quiet; safe to run again.
set -euo pipefail
. "$(dirname "$0")/apt-missing.sh"
apt_install_missing setup-network dnsmasq-base nftables iproute2 conntrack busybox-static
