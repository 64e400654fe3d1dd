#!/usr/bin/env bash
# Runs two real libvirtd "hosts" with the qemu driver on this one machine, for
# integration tests (no systemd, no dbus, no usable KVM: guests use TCG).
#
#   libvirtd-hosts.sh up      install what is missing, start both hosts, wait
#                             until both answer, print "A=<uri>", "B=<uri>"
#                             and "B_NETNS=<host B's network namespace>"
#   libvirtd-hosts.sh up-a    the same for host A only (the all-in-one's)
#   libvirtd-hosts.sh down    stop both libvirtds and their virtlogds; remove
#                             host B's state, network namespace and link.
#                             Guests are neither destroyed nor undefined (a
#                             guest still running on B is orphaned)
#   libvirtd-hosts.sh status  print whether each host answers (exit 1 if not)
#   libvirtd-hosts.sh restart-a  restart host A's libvirtd (its guests keep
#                             running), for tests of reconnecting clients
#
# Host A is the machine's own libvirtd, in the default network namespace:
# qemu:///system (socket /run/libvirt), and over TCP on 16509, configured by
# /etc/libvirt/libvirtd.conf and /etc/libvirt/qemu.conf, which this script
# writes. With host B up it listens on its underlay address,
# qemu+tcp://10.199.0.1:16509/system (so that B reaches it); alone (up-a)
# on qemu+tcp://127.0.0.1:16509/system.
#
# Host B is a second libvirtd with its own virtlogd, started inside a network
# namespace of its own, nmhostb, and a mount namespace of its own (unshare -m,
# private propagation) in which $HOSTB_DIR/{etc,run,lib,log,cache} are
# bind-mounted over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
# /var/log/libvirt and /var/cache/libvirt. So it has its own config (a copy
# of A's with its own tcp_port, listen address, host_uuid and migration
# ports), sockets, pid files, domain definitions, save images and logs, and
# its guests' taps and the bridges they join are in nmhostb, not beside A's:
# the two hosts share a kernel but not a network stack, as two machines
# would not. Everything else (/tmp, instance directories, images) is shared
# with A. Its files (e.g. domain and serial logs under $HOSTB_DIR/log/qemu)
# can be read from the default namespace too.
#
# The hosts' "physical" network, the underlay: a veth pair, nmhostb0 in the
# default namespace with 10.199.0.1/30 (host A's address) and nmhosta0 in
# nmhostb with 10.199.0.2/30 (host B's), 10.199.0.0/30 being a block
# unlikely to be used on a test machine (change UNDERLAY_* below if it is).
# B's libvirtd listens on qemu+tcp://10.199.0.2:16510/system, reached from
# the default namespace over that link (or through its unix socket,
# qemu+unix:///system?socket=$HOSTB_DIR/run/libvirt-sock). The libvirtds
# listen on these addresses only (auth_tcp none: for tests on this machine).
# Each host's agent uses its underlay address as --tunnel-ip, so VXLAN
# crosses the link as between two machines; the linux network driver of
# host B's agent runs in nmhostb (--network-namespace nmhostb). A flat
# network that spans both hosts needs a bridge of the same name on each
# side, joined by a veth pair like a physical segment; the test that uses
# one makes it (test/libvirt-network.test.ts).
#
# qemu runs as root (user/group "root" in qemu.conf, dynamic_ownership off):
# instance files that root creates under /tmp or /var/lib (mkdtemp 0700
# directories, 0600 files) are then usable without chown/chmod games, and
# libvirt never changes the owner of the test's files. No security driver, no
# cgroups (libvirt logs "At least one cgroup controller is required" at each
# start; harmless), no per-guest mount namespace, no dbus/machined, no
# libvirt-daemon-system (its init scripts, default network and polkit setup).
# Host UUIDs are kept in $STATE_DIR so they stay the same across down/up;
# they differ, so live migration A <-> B is allowed.
#
# Live migration between the hosts: peer to peer, each libvirtd connecting
# to the other's URI above. Give the target's address per migration (the
# typed params migrate_uri and listen_address; the agent's
# --live-migration-uri, whose host is also its inbound address), e.g. to B:
# --migrateuri tcp://10.199.0.2 --listen-address 10.199.0.2 (virsh). A uses
# qemu migration (and NBD) ports 49152-49215, B 49216-49279. /dev/kvm opens
# here but guests hang under KVM although the capabilities list it: use
# <domain type='qemu'>.
#
# Volumes over NBD with TLS: qemu on each host opens a volume export
# (<source protocol='nbd' tls='yes'>) with a client certificate of that
# host, from the directory qemu.conf's nbd_tls_x509_cert_dir names
# (ca-cert.pem, client-cert.pem, client-key.pem): $STATE_DIR/nbd-tls/<name>,
# whose certificate has CN=<name>, the host's name as its agent reports it
# (HOST_A_NAME, default host-a; HOST_B_NAME, default host-b). Both are
# signed by one CA, $STATE_DIR/nbd-tls/ca (ca-cert.pem, ca-key.pem), made
# here once and kept across down/up, or the directory NBD_CA_DIR names (with
# those two files). A volume host's export daemons need that CA's
# ca-cert.pem to admit the hosts, and a server certificate from it that
# qemu here trusts (one for 127.0.0.1 / 10.199.0.1 in tests). 'up' prints
# "A_NAME=…", "B_NAME=…" and "NBD_CA=<the CA's directory>".
set -euo pipefail

HOSTB_DIR=${HOSTB_DIR:-/run/libvirt-hostb}
STATE_DIR=${LIBVIRT_HOSTS_STATE:-/var/lib/libvirt-hosts}
PORT_A=16509
PORT_B=16510
NETNS_B=nmhostb
UNDERLAY_LINK_A=nmhostb0 # A's end of the underlay, in the default namespace
UNDERLAY_LINK_B=nmhosta0 # B's end, in $NETNS_B
UNDERLAY_ADDR_A=10.199.0.1
UNDERLAY_ADDR_B=10.199.0.2
UNDERLAY_PREFIX=30
URI_B=qemu+tcp://$UNDERLAY_ADDR_B:$PORT_B/system
HOST_A_NAME=${HOST_A_NAME:-host-a}
HOST_B_NAME=${HOST_B_NAME:-host-b}
NBD_TLS_DIR=$STATE_DIR/nbd-tls
NBD_CA=${NBD_CA_DIR:-$NBD_TLS_DIR/ca}
PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 qemu-utils busybox-static cpio pkg-config openssl)
MARKER="# Written by scripts/libvirtd-hosts.sh; rewritten on every 'up'."

die() { echo "libvirtd-hosts: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

. "$(dirname "$0")/apt-missing.sh"

install_packages() {
  apt_install_missing libvirtd-hosts "${PACKAGES[@]}" || die "installing the packages failed"
}

setup_users() {
  getent group kvm >/dev/null || groupadd --system kvm
  getent group libvirt >/dev/null || groupadd --system libvirt
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd --system --gid kvm --groups libvirt-qemu --home-dir /var/lib/libvirt \
      --no-create-home --shell /usr/sbin/nologin libvirt-qemu
  # Without access to /dev/kvm libvirt's capability probing is slow (every
  # define waits on it); guests themselves still use TCG (<domain type='qemu'>).
  if [ -c /dev/kvm ]; then chgrp kvm /dev/kvm; chmod 660 /dev/kvm; fi
}

host_uuid() { # NAME -> a stable UUID for that host
  mkdir -p "$STATE_DIR"
  local f="$STATE_DIR/$1.uuid"
  [ -s "$f" ] || cat /proc/sys/kernel/random/uuid >"$f"
  cat "$f"
}

libvirtd_conf() { # LISTEN_ADDR PORT UUID
  cat <<EOF
$MARKER
listen_tls = 0
listen_tcp = 1
listen_addr = "$1"
tcp_port = "$2"
auth_tcp = "none"
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
host_uuid = "$3"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
}

# The CA of the hosts' NBD client certificates: made once (EC P-256, ten
# years) unless NBD_CA_DIR names one.
nbd_ca() {
  if [ -n "${NBD_CA_DIR:-}" ]; then
    [ -s "$NBD_CA/ca-cert.pem" ] && [ -s "$NBD_CA/ca-key.pem" ] || die "NBD_CA_DIR=$NBD_CA lacks ca-cert.pem or ca-key.pem"
    return 0
  fi
  [ -s "$NBD_CA/ca-cert.pem" ] && [ -s "$NBD_CA/ca-key.pem" ] && return 0
  mkdir -p "$NBD_CA"; chmod 700 "$NBD_CA"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/O=novamesh/CN=novamesh test hosts CA" -keyout "$NBD_CA/ca-key.pem" -out "$NBD_CA/ca-cert.pem" 2>/dev/null ||
    die "making the NBD client CA in $NBD_CA failed"
}

# Host NAME's NBD client certificate directory (printed): CN=NAME from the
# CA above, made again when missing, for another name or from another CA.
nbd_client_dir() { # NAME
  local dir=$NBD_TLS_DIR/$1 tmp
  if [ -s "$dir/client-cert.pem" ] && [ -s "$dir/client-key.pem" ] && cmp -s "$dir/ca-cert.pem" "$NBD_CA/ca-cert.pem" &&
    openssl x509 -in "$dir/client-cert.pem" -noout -subject -nameopt RFC2253 | grep -q "CN=$1,O=novamesh\$" &&
    openssl verify -CAfile "$NBD_CA/ca-cert.pem" "$dir/client-cert.pem" >/dev/null 2>&1; then
    echo "$dir"; return 0
  fi
  mkdir -p "$dir"; chmod 700 "$dir"
  tmp=$(mktemp -d)
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$tmp/ext.cnf"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=novamesh/CN=$1" \
    -keyout "$dir/client-key.pem" -out "$tmp/req.csr" 2>/dev/null &&
    openssl x509 -req -in "$tmp/req.csr" -CA "$NBD_CA/ca-cert.pem" -CAkey "$NBD_CA/ca-key.pem" -set_serial "0x$(openssl rand -hex 8)" \
      -days 3650 -extfile "$tmp/ext.cnf" -out "$dir/client-cert.pem" 2>/dev/null ||
    { rm -rf "$tmp"; die "issuing the NBD client certificate of $1 failed"; }
  rm -rf "$tmp"
  cp "$NBD_CA/ca-cert.pem" "$dir/ca-cert.pem"
  echo "$dir"
}

qemu_conf() { # MIGRATION_PORT_MIN MIGRATION_PORT_MAX NBD_CERT_DIR
  cat <<EOF
$MARKER
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "logd"
migration_port_min = $1
migration_port_max = $2
nbd_tls = 0
nbd_tls_x509_cert_dir = "$3"
EOF
}

# Writes FILE from stdin unless it already has that content; a file that this
# script did not write is kept as FILE.orig once. Returns 0 when it changed.
write_conf() {
  local file=$1 tmp; tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
  if [ -f "$file" ] && ! grep -qxF "$MARKER" "$file" && [ ! -e "$file.orig" ]; then
    cp -p "$file" "$file.orig"
  fi
  mv "$tmp" "$file"; chmod 644 "$file"
  return 0
}

pid_alive() { # PIDFILE
  local pid
  [ -s "$1" ] && pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

answers() { timeout 10 virsh -c "$1" version >/dev/null 2>&1; }

wait_answer() { # URI PIDFILE LOG
  local i
  for i in $(seq 1 120); do
    answers "$1" && return 0
    pid_alive "$2" || break
    sleep 0.5
  done
  [ -f "$3" ] && tail -20 "$3" >&2
  die "$1 does not answer"
}

stop_pidfile() { # PIDFILE
  local pid i
  pid_alive "$1" || { rm -f "$1"; return 0; }
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$1"
}

# Whether the underlay link (made by 'up') is there.
underlay_present() { ip link show dev "$UNDERLAY_LINK_A" >/dev/null 2>&1; }

# Host A's listen address: its underlay address when the link is there (host
# B reaches it for migrations B -> A), else the loopback address.
addr_a() { if underlay_present; then echo "$UNDERLAY_ADDR_A"; else echo 127.0.0.1; fi; }
uri_a() { echo "qemu+tcp://$(addr_a):$PORT_A/system"; }

# Host B's network namespace and the underlay link to it, with addresses.
# Leaves what is there as it is; a link whose other end is not in the
# namespace (the namespace was deleted meanwhile) is made again.
underlay_up() {
  [ -e "/run/netns/$NETNS_B" ] || ip netns add "$NETNS_B"
  ip -n "$NETNS_B" link set dev lo up
  if underlay_present && ! ip -n "$NETNS_B" link show dev "$UNDERLAY_LINK_B" >/dev/null 2>&1; then
    ip link del dev "$UNDERLAY_LINK_A"
  fi
  underlay_present ||
    ip link add "$UNDERLAY_LINK_A" type veth peer name "$UNDERLAY_LINK_B" netns "$NETNS_B"
  ip addr replace "$UNDERLAY_ADDR_A/$UNDERLAY_PREFIX" dev "$UNDERLAY_LINK_A"
  ip link set dev "$UNDERLAY_LINK_A" up
  ip -n "$NETNS_B" addr replace "$UNDERLAY_ADDR_B/$UNDERLAY_PREFIX" dev "$UNDERLAY_LINK_B"
  ip -n "$NETNS_B" link set dev "$UNDERLAY_LINK_B" up
}

# Removes the link (both ends) and the namespace's name. Whatever still runs
# in the namespace (an orphaned guest) keeps it alive, unnamed.
underlay_down() {
  if underlay_present; then ip link del dev "$UNDERLAY_LINK_A"; fi
  if [ -e "/run/netns/$NETNS_B" ]; then ip netns del "$NETNS_B"; fi
}

up_a() {
  mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt
  local changed=0 certs
  certs=$(nbd_client_dir "$HOST_A_NAME") || exit 1
  libvirtd_conf "$(addr_a)" "$PORT_A" "$(host_uuid a)" | write_conf /etc/libvirt/libvirtd.conf && changed=1
  qemu_conf 49152 49215 "$certs" | write_conf /etc/libvirt/qemu.conf && changed=1
  pid_alive /run/virtlogd.pid || virtlogd -d
  if pid_alive /run/libvirtd.pid && [ "$changed" = 1 ]; then
    stop_pidfile /run/libvirtd.pid # a restart keeps running guests
  fi
  pid_alive /run/libvirtd.pid || libvirtd -d --listen
}

up_b() {
  local pid certs
  certs=$(nbd_client_dir "$HOST_B_NAME") || exit 1
  if pid_alive "$HOSTB_DIR/run/libvirtd.pid"; then
    pid=$(cat "$HOSTB_DIR/run/libvirtd.pid")
    if [ "$(ip netns identify "$pid")" != "$NETNS_B" ]; then
      # Started by an earlier version of this script, in the default network namespace.
      echo "libvirtd-hosts: host B's libvirtd (pid $pid) is not in $NETNS_B; starting it again there (its guests, if any, are orphaned)" >&2
    elif qemu_conf 49216 49279 "$certs" | cmp -s - "$HOSTB_DIR/etc/qemu.conf"; then
      return 0
    else
      # Written by an earlier version of this script (e.g. without the NBD client certificate).
      echo "libvirtd-hosts: host B's qemu.conf is out of date; starting host B afresh (its guests, if any, are orphaned)" >&2
    fi
    stop_pidfile "$HOSTB_DIR/run/libvirtd.pid"
  fi
  # Stale state of a host B that is gone (e.g. killed): start afresh.
  stop_pidfile "$HOSTB_DIR/run/virtlogd.pid"
  rm -rf "$HOSTB_DIR"
  mkdir -p "$HOSTB_DIR"/{etc,run,lib/qemu,log/qemu,cache}
  cp -a /etc/libvirt/. "$HOSTB_DIR/etc/"
  rm -f "$HOSTB_DIR"/etc/*.orig
  # A's probed qemu capabilities are valid for B too (same binaries, same
  # host): saves B probing qemu again at its start.
  [ -d /var/cache/libvirt/qemu ] && cp -a /var/cache/libvirt/qemu "$HOSTB_DIR/cache/"
  libvirtd_conf "$UNDERLAY_ADDR_B" "$PORT_B" "$(host_uuid b)" | write_conf "$HOSTB_DIR/etc/libvirtd.conf" || true
  qemu_conf 49216 49279 "$certs" | write_conf "$HOSTB_DIR/etc/qemu.conf" || true
  mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
  # 'ip netns exec' enters B's network namespace in a mount namespace of its
  # own with /sys mounted for it (libvirt reads the bridges and taps there);
  # unshare then makes the bind mounts private to B. The namespaces live on
  # in the daemons (and the guests they start) after the shell exits.
  HOSTB_DIR=$HOSTB_DIR ip netns exec "$NETNS_B" unshare --mount --propagation private -- /bin/bash -euc '
    mount --bind "$HOSTB_DIR/etc" /etc/libvirt
    mount --bind "$HOSTB_DIR/run" /run/libvirt
    mount --bind "$HOSTB_DIR/lib" /var/lib/libvirt
    mount --bind "$HOSTB_DIR/log" /var/log/libvirt
    mount --bind "$HOSTB_DIR/cache" /var/cache/libvirt
    virtlogd -d -p /run/libvirt/virtlogd.pid
    libvirtd -d --listen -p /run/libvirt/libvirtd.pid
  '
}

cmd_up() {
  install_packages
  setup_users
  underlay_up
  nbd_ca
  up_a
  up_b
  wait_answer qemu:///system /run/libvirtd.pid /var/log/libvirt/libvirtd.log
  wait_answer "$(uri_a)" /run/libvirtd.pid /var/log/libvirt/libvirtd.log
  wait_answer "$URI_B" "$HOSTB_DIR/run/libvirtd.pid" "$HOSTB_DIR/log/libvirtd.log"
  echo "A=$(uri_a)"
  echo "B=$URI_B"
  echo "B_NETNS=$NETNS_B"
  echo "A_NAME=$HOST_A_NAME"
  echo "B_NAME=$HOST_B_NAME"
  echo "NBD_CA=$NBD_CA"
}

cmd_up_a() {
  install_packages
  setup_users
  nbd_ca
  up_a
  wait_answer qemu:///system /run/libvirtd.pid /var/log/libvirt/libvirtd.log
  wait_answer "$(uri_a)" /run/libvirtd.pid /var/log/libvirt/libvirtd.log
  echo "A=$(uri_a)"
  echo "A_NAME=$HOST_A_NAME"
  echo "NBD_CA=$NBD_CA"
}

cmd_down() {
  if pid_alive "$HOSTB_DIR/run/libvirtd.pid"; then
    local running
    running=$(timeout 10 virsh -c "$URI_B" list --name 2>/dev/null | sed '/^$/d' | tr '\n' ' ' || true)
    [ -z "$running" ] || echo "libvirtd-hosts: left running on B, now unmanaged: $running" >&2
  fi
  stop_pidfile "$HOSTB_DIR/run/libvirtd.pid"
  stop_pidfile "$HOSTB_DIR/run/virtlogd.pid"
  rm -rf "$HOSTB_DIR"
  stop_pidfile /run/libvirtd.pid
  stop_pidfile /run/virtlogd.pid
  underlay_down
}

cmd_status() {
  local rc=0 name uri
  for name in A B; do
    if [ "$name" = A ]; then uri=$(uri_a); else uri=$URI_B; fi
    if command -v virsh >/dev/null && answers "$uri"; then
      echo "$name=$uri up"
    else
      echo "$name=$uri down"; rc=1
    fi
  done
  return "$rc"
}

# Restarts host A's libvirtd (guests keep running; clients see their
# connection close), as an upgrade or a crash would.
cmd_restart_a() {
  pid_alive /run/libvirtd.pid || die "host A is not running (up first)"
  stop_pidfile /run/libvirtd.pid
  libvirtd -d --listen
  wait_answer "$(uri_a)" /run/libvirtd.pid /var/log/libvirt/libvirtd.log
}

case "${1:-}" in
  up) cmd_up ;;
  up-a) cmd_up_a ;;
  down) cmd_down ;;
  status) cmd_status ;;
  restart-a) cmd_restart_a ;;
  *) echo "usage: $0 up|up-a|down|status|restart-a" >&2; exit 2 ;;
esac
