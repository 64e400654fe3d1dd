#!/usr/bin/env bash
# Smoke test of the two local libvirtd hosts (scripts/libvirtd-hosts.sh) with
# the tiny test guest (scripts/build-test-guest.sh), driven by virsh:
#
#   1. defines a domain on host A (TCG, 1 vCPU, 256 MiB, direct kernel boot,
#      serial console logged to a file, disk = qcow2 overlay of disk.qcow2)
#      and starts it; waits for "novamesh-test-guest: ready" in the log
#   2. virsh shutdown (ACPI power button) until shut off; start again
#   3. virsh reboot --mode acpi: the guest boots again in the same process
#   4. suspend / resume, managedsave / start (restore)
#   5. live migration A -> B, disk file shared (same path on both):
#        --live --p2p --persistent --undefinesource --unsafe
#   6. live migration B -> A and A -> B with the disk local to each host:
#        --copy-storage-inc --migrate-disks vda, destination overlay
#        pre-created (qemu-img create -b base) at another path, given in
#        --xml and --persistent-xml
#      after each migration the guest must still be running and still
#      printing to the serial log on the destination
#   7. destroys and undefines the domain on B
#
# Prints one line per step with its duration; exits non-zero on the first
# failure. The domain and its files are removed on exit in any case.
# Usage: libvirtd-smoke.sh [GUEST_DIR]   (default /tmp/novamesh-test-guest)
# SMOKE_KEEP=1 keeps the domain and its files (for a look after a failure).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
GUEST=${1:-/tmp/novamesh-test-guest}
HOSTB_DIR=${HOSTB_DIR:-/run/libvirt-hostb}
MEMORY_MIB=${SMOKE_MEMORY_MIB:-256}

hosts=$("$here/libvirtd-hosts.sh" up) || exit 1
eval "$hosts" # A=<uri>, B=<uri>, B_NETNS=<namespace>, A_NAME, B_NAME and NBD_CA (unused here)
# qemu's migration stream goes to the target host's address, the host of its URI.
addr_of() { sed -E 's#^[^:]+://([^:/]+).*#\1#' <<<"$1"; }
"$here/build-test-guest.sh" "$GUEST"

name=novamesh-smoke-$$
work=$(mktemp -d /tmp/novamesh-smoke.XXXXXX)
# The serial log path is the same in the domain XML on both hosts; host B's
# /var/log/libvirt is its own, seen from here under $HOSTB_DIR/log.
log_a=/var/log/libvirt/qemu/$name-serial.log
log_b=$HOSTB_DIR/log/qemu/$name-serial.log

cleanup() {
  local uri
  if [ "${SMOKE_KEEP:-0}" = 1 ]; then echo "kept $name and $work" >&2; return 0; fi
  for uri in "$A" "$B"; do
    virsh -q -c "$uri" destroy "$name" >/dev/null 2>&1 || true
    virsh -q -c "$uri" undefine --managed-save "$name" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
  rm -f "$log_a" "$log_b"
}
trap cleanup EXIT

fail() { echo "libvirtd-smoke: FAILED: $*" >&2; exit 1; }
now() { date +%s%N; }
ms_since() { echo $(( ($(now) - $1) / 1000000 )); }
ok() { echo "ok   $1 ($2 ms)"; }
count() { grep -c -- "$2" "$1" 2>/dev/null || true; }
wait_count() { # FILE PATTERN N SECONDS
  local end=$(( $(date +%s) + $4 ))
  while [ "$(count "$1" "$2")" -lt "$3" ]; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.05
  done
}
wait_state() { # URI STATE SECONDS
  local end=$(( $(date +%s) + $3 ))
  while [ "$(virsh -c "$1" domstate "$name" 2>/dev/null | sed -n 1p)" != "$2" ]; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.05
  done
}
alive_on() { # URI LOGFILE: running, and a new "alive" line within 10 s
  local n; n=$(count "$2" 'novamesh-test-guest: alive')
  [ "$(virsh -c "$1" domstate "$name")" = running ] || fail "not running on $1"
  wait_count "$2" 'novamesh-test-guest: alive' $((n + 1)) 10 || fail "no console output in $2"
}
overlay() { qemu-img create -q -f qcow2 -b "$GUEST/disk.qcow2" -F qcow2 "$1"; }

mkdir -p "$work/a" "$work/a2" "$work/b2"
overlay "$work/a/disk.qcow2"
cat >"$work/domain.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>$MEMORY_MIB</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST/vmlinuz</kernel>
    <initrd>$GUEST/initrd.img</initrd>
    <cmdline>console=ttyS0</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$work/a/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='$log_a' append='off'/>
    </serial>
  </devices>
</domain>
EOF

t=$(now); virsh -q -c "$A" define "$work/domain.xml" >/dev/null || fail define; ok define "$(ms_since "$t")"

t=$(now); virsh -q -c "$A" start "$name" >/dev/null || fail start
wait_count "$log_a" '^novamesh-test-guest: ready' 1 60 || fail "no ready line in $log_a"
ok "start -> ready line" "$(ms_since "$t")"

t=$(now); virsh -q -c "$A" shutdown "$name" >/dev/null
wait_state "$A" "shut off" 30 || fail "shutdown (ACPI) did not power off"
ok "shutdown (ACPI) -> shut off" "$(ms_since "$t")"

t=$(now); virsh -q -c "$A" start "$name" >/dev/null || fail "start again"
wait_count "$log_a" '^novamesh-test-guest: ready' 1 60 || fail "no ready line after start again"
ok "start again -> ready line" "$(ms_since "$t")"

t=$(now); virsh -q -c "$A" reboot --mode acpi "$name" >/dev/null || fail reboot
wait_count "$log_a" '^novamesh-test-guest: ready' 2 60 || fail "no ready line after reboot --mode acpi"
ok "reboot --mode acpi -> ready line" "$(ms_since "$t")"

t=$(now); virsh -q -c "$A" suspend "$name" >/dev/null
[ "$(virsh -c "$A" domstate "$name")" = paused ] || fail suspend
virsh -q -c "$A" resume "$name" >/dev/null
alive_on "$A" "$log_a"
ok "suspend + resume" "$(ms_since "$t")"

t=$(now); virsh -q -c "$A" managedsave "$name" >/dev/null || fail managedsave
[ "$(virsh -c "$A" domstate "$name")" = "shut off" ] || fail "not off after managedsave"
ok managedsave "$(ms_since "$t")"
t=$(now); virsh -q -c "$A" start "$name" >/dev/null || fail "start from managed save"
[ "$(virsh -c "$A" domstate --reason "$name")" = "running (restored)" ] || fail "not restored"
alive_on "$A" "$log_a"
ok "start from managed save (restore) -> alive" "$(ms_since "$t")"

# 5. Disk shared: the same path is valid on both hosts. libvirt refuses a
# disk on a local (non-shared) file system without --unsafe.
t=$(now)
virsh -q -c "$A" migrate --live --p2p --persistent --undefinesource --unsafe \
  --migrateuri "tcp://$(addr_of "$B")" --listen-address "$(addr_of "$B")" "$name" "$B" ||
  fail "migrate A -> B (shared disk)"
ok "migrate A -> B (shared disk, --unsafe)" "$(ms_since "$t")"
alive_on "$B" "$log_b"
virsh -q -c "$A" dominfo "$name" >/dev/null 2>&1 && fail "still defined on A after --undefinesource"

# 6. Disk local to each host: copy the overlay into a pre-created overlay of
# the same base at another path.
migrate_local_disk() { # FROM_URI TO_URI NEW_DISK_PATH
  local dest_xml=$work/dest.xml persist_xml=$work/persist.xml
  overlay "$3"
  # The only <source file=...> is the disk's (the serial log is <source path=...>).
  virsh -c "$1" dumpxml --migratable "$name" |
    sed "s#<source file='[^']*'#<source file='$3'#" >"$dest_xml" || return 1
  virsh -c "$1" dumpxml --inactive --migratable "$name" |
    sed "s#<source file='[^']*'#<source file='$3'#" >"$persist_xml" || return 1
  virsh -q -c "$1" migrate --live --p2p --persistent --undefinesource \
    --copy-storage-inc --migrate-disks vda --xml "$dest_xml" --persistent-xml "$persist_xml" \
    --migrateuri "tcp://$(addr_of "$2")" --listen-address "$(addr_of "$2")" "$name" "$2" || return 1
  [ "$(virsh -c "$2" domblklist "$name" | awk '$1 == "vda" { print $2 }')" = "$3" ] ||
    fail "disk on destination is not $3"
}
t=$(now); migrate_local_disk "$B" "$A" "$work/a2/disk.qcow2" || fail "migrate B -> A (--copy-storage-inc)"
ok "migrate B -> A (local disk, --copy-storage-inc)" "$(ms_since "$t")"
alive_on "$A" "$log_a"
t=$(now); migrate_local_disk "$A" "$B" "$work/b2/disk.qcow2" || fail "migrate A -> B (--copy-storage-inc)"
ok "migrate A -> B (local disk, --copy-storage-inc)" "$(ms_since "$t")"
alive_on "$B" "$log_b"
persistent=$(virsh -c "$B" dumpxml --inactive "$name")
case "$persistent" in
  *"<source file='$work/b2/disk.qcow2'/>"*) ;;
  *) fail "persistent definition on B does not use $work/b2/disk.qcow2" ;;
esac

t=$(now)
virsh -q -c "$B" destroy "$name" >/dev/null && virsh -q -c "$B" undefine "$name" >/dev/null || fail "destroy/undefine on B"
ok "destroy + undefine on B" "$(ms_since "$t")"
echo "libvirtd-smoke: passed"
