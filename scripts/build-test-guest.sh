#!/usr/bin/env bash
# Builds a tiny bootable test guest from Debian packages only:
#
#   OUTDIR/vmlinuz     the kernel of the package linux-image-cloud-amd64
#                      depends on (apt-get download + dpkg-deb -x, nothing
#                      is installed)
#   OUTDIR/initrd.img  a busybox (busybox-static) initramfs, cpio newc + gzip
#   OUTDIR/disk.qcow2  an empty 64 MiB qcow2 to serve as the root disk image
#                      (the guest never touches it)
#   OUTDIR/kernel-version  the kernel's release string
#
# The initramfs's /init mounts proc, sys and dev, loads evdev.ko and
# button.ko (and whatever they depend on) from that kernel's modules, prints
#   novamesh-test-guest: ready
# on the console (boot with console=ttyS0 to get it on the serial port),
# followed by a line with hostname and uptime, then a line
#   novamesh-test-guest: alive uptime=<seconds>
# every novamesh.tick=N seconds given on the kernel command line (default 2,
# 0 for none), so a console log shows whether the guest still runs (e.g. after
# a migration). Its network interfaces other than lo are printed as
#   novamesh-test-guest: nics eth0=<mac> …   (or "nics none")
# after the ready line and again whenever they change (within ~0.5 s of a
# hot-plug or unplug; virtio_pci.ko and virtio_net.ko are loaded for that).
# Every such interface gets a DHCP client (busybox udhcpc, started at boot
# and when an interface appears; af_packet.ko when the kernel has it as a
# module): it sets the address, the MTU (option 26) and the routes (the
# classless static routes of option 121, else the router; each interface's
# routes with a metric of its own), and prints
#   novamesh-test-guest: address eth0=<ip>/<prefix>
# once the interface is configured (again when the lease changes). The
# kernel answers ICMP echo on it. udhcpc's own log is /tmp/udhcpc.<ifname>.log
# in the guest. Its virtio disks are printed as
#   novamesh-test-guest: disks vda=<bytes> vdb=<bytes> …   (or "disks none")
# at boot and whenever one appears, goes or changes size (a hot-plugged or
# extended volume), and each disk that appears as
#   novamesh-test-guest: disk vdb head=<its first 64 bytes, printable only>
# so a test can see what was written on a volume before it was attached.
# A config drive (the disk labelled config-2, as cloud-init's ConfigDrive
# datasource finds it: a CD-ROM, so ata_piix, sr_mod and isofs are loaded)
# is read once at boot, the guest takes its host name, and prints
#   novamesh-test-guest: config-drive /dev/sr0 hostname=<h> key=<name>:SHA256:<fingerprint> user-data=<first line>
# (the key's fingerprint as ssh-keygen -l shows it; "key=none" and
# "user-data=none" when it has none), or "config-drive none".
# On the ACPI power button (virsh shutdown, virsh reboot --mode acpi) it
# prints "novamesh-test-guest: power button" and powers off at once
# (poweroff -f); for a reboot libvirt then resets the guest and it
# boots again. Needs no agent and no disk. Memory: it does not boot in
# 64 MiB, boots in 80 MiB. Under TCG a cold boot reaches "ready" in ~4-6 s;
# a reboot (warm reset) takes 5-14 s, the extra time spent in the kernel's
# decompressor, most often the long way with 96-128 MiB: give it 256 MiB.
#
# Skips the build when all outputs exist and are newer than this script.
# Usage: build-test-guest.sh OUTDIR
set -euo pipefail

die() { echo "build-test-guest: $*" >&2; exit 1; }
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$1
SELF=$(readlink -f "$0")
DISK_SIZE=64M
MODULES=(evdev button virtio_pci virtio_net)
# Loaded when this kernel has them as modules (built in otherwise).
OPTIONAL_MODULES=(af_packet virtio_blk ata_piix sr_mod isofs)

fresh=1
for f in vmlinuz initrd.img disk.qcow2 kernel-version; do
  [ -s "$OUT/$f" ] && [ "$OUT/$f" -nt "$SELF" ] || fresh=0
done
[ "$fresh" = 1 ] && exit 0

. "$(dirname "$SELF")/apt-missing.sh"
need=()
for p in busybox-static cpio qemu-utils gzip; do apt_installed "$p" || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages ${need[*]} (run as root to install them)"
  apt_install_missing build-test-guest "${need[@]}" || die "installing ${need[*]} failed"
fi

kernel_pkg() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
  [ "$(id -u)" -eq 0 ] && apt-get update -qq >/dev/null 2>&1 || true
  pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || die "apt-cache does not know linux-image-cloud-amd64 (apt-get update?)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "build-test-guest: downloading $pkg (the kernel; nothing is installed)"
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
  die "apt-get download $pkg failed"
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/pkg"

kver=
for d in "$work"/pkg/lib/modules/*/; do [ -d "$d" ] && kver=$(basename "$d") && break; done
[ -n "$kver" ] && [ -f "$work/pkg/boot/vmlinuz-$kver" ] || die "no kernel in $pkg"
moddir=$work/pkg/lib/modules/$kver

echo "build-test-guest: building a busybox initramfs for kernel $kver"
# The initramfs tree.
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules}
cp /bin/busybox "$root/bin/busybox"
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

# Modules in load order (dependencies first), decompressed: busybox's insmod
# and this kernel's finit_module may not read .ko.xz/.zst/.gz.
find_module() { # NAME -> path of NAME's module file in the package
  local n=${1//-/_} alt=${1//_/-}
  find "$moddir/kernel" \( -name "$n.ko" -o -name "$n.ko.*" -o -name "$alt.ko" -o -name "$alt.ko.*" \) -print -quit
}
order=()
add_module() { # NAME
  local name=${1//-/_} path deps d m
  for m in "${order[@]:+${order[@]}}"; do [ "$m" = "$name" ] && return 0; done
  path=$(find_module "$name")
  [ -n "$path" ] || die "module $name not in $pkg (built in? check the kernel config)"
  case "$path" in
    *.ko) cp "$path" "$root/lib/modules/$name.ko" ;;
    *.ko.xz) xz -dc "$path" >"$root/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$path" >"$root/lib/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$path" >"$root/lib/modules/$name.ko" ;;
    *) die "unknown module format $path" ;;
  esac
  deps=$(tr '\0' '\n' <"$root/lib/modules/$name.ko" | sed -n 's/^depends=//p')
  deps=${deps%%$'\n'*}
  for d in ${deps//,/ }; do add_module "$d"; done
  order+=("$name")
}
for m in "${MODULES[@]}"; do add_module "$m"; done
for m in "${OPTIONAL_MODULES[@]}"; do
  if [ -n "$(find_module "$m")" ]; then
    add_module "$m"
  elif ! grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null; then
    die "module $m is neither a module of $pkg nor built in (modules.builtin)"
  fi
done
printf '%s\n' "${order[@]}" >"$root/etc/modules"

# The DHCP client's script: udhcpc runs it with the lease in the environment.
cat >"$root/etc/udhcpc.script" <<'EOF'
#!/bin/busybox sh
say() { echo "novamesh-test-guest: $*" >/dev/console; }
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound | renew)
    [ -n "$mtu" ] && { ip link set "$interface" mtu "$mtu" || say "dhcp $interface: setting mtu $mtu failed"; }
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/$mask "; then
      ip addr flush dev "$interface"
      ip addr add "$ip/$mask" dev "$interface" || say "dhcp $interface: adding $ip/$mask failed"
    fi
    metric=$((100 + $(cat "/sys/class/net/$interface/ifindex")))
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        dest=$1 gw=$2
        shift 2
        [ "$dest" = 0.0.0.0/0 ] && dest=default
        if [ "$gw" = 0.0.0.0 ]; then
          ip route replace "$dest" dev "$interface" metric "$metric" || say "dhcp $interface: route $dest failed"
        else
          ip route replace "$dest" via "$gw" dev "$interface" metric "$metric" || say "dhcp $interface: route $dest via $gw failed"
        fi
      done
    elif [ -n "$router" ]; then
      set -- $router
      ip route replace default via "$1" dev "$interface" metric "$metric" || say "dhcp $interface: default route via $1 failed"
    fi
    say "address $interface=$ip/$mask"
    ;;
esac
exit 0
EOF
chmod 755 "$root/etc/udhcpc.script"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
hostname novamesh-test-guest
for m in $(cat /etc/modules); do
  insmod "/lib/modules/$m.ko" || echo "novamesh-test-guest: insmod $m failed"
done

# The ACPI power button's input device (button.ko + evdev.ko).
button=
for i in $(seq 1 50); do
  for d in /sys/class/input/event*; do
    [ "$(cat "$d/device/name" 2>/dev/null)" = "Power Button" ] && button=/dev/input/${d##*/}
  done
  [ -n "$button" ] && [ -c "$button" ] && break
  button=
  usleep 100000
done

tick=2
for arg in $(cat /proc/cmdline); do
  case "$arg" in novamesh.tick=*) tick=${arg#novamesh.tick=} ;; esac
done
up() { cut -d' ' -f1 /proc/uptime; }

# Open the button before saying ready, so that a press right after the ready
# line is not lost (evdev queues events for open readers).
[ -n "$button" ] && exec 3<"$button"
echo "novamesh-test-guest: ready"
echo "novamesh-test-guest: hostname=$(hostname) uptime=$(up) kernel=$(uname -r) power_button=${button:-none}"
# The config drive: what a guest made from a real cloud image learns of itself.
configdrive() {
  dev=
  for i in $(seq 1 30); do
    dev=$(findfs LABEL=config-2 2>/dev/null) && break
    dev=
    usleep 100000
  done
  [ -n "$dev" ] || { echo "novamesh-test-guest: config-drive none"; return; }
  mkdir -p /mnt/config
  mount -t iso9660 -o ro "$dev" /mnt/config || { echo "novamesh-test-guest: config-drive $dev cannot be mounted"; return; }
  meta=/mnt/config/openstack/latest/meta_data.json
  h=$(sed -n 's/.*"hostname":"\([^"]*\)".*/\1/p' "$meta")
  [ -n "$h" ] && hostname "$h"
  key=$(sed -n 's/.*"keys":\[{"name":"\([^"]*\)","type":"ssh","data":"[^ "]* \([A-Za-z0-9+/=]*\).*/\1 \2/p' "$meta")
  fp=none
  if [ -n "$key" ]; then
    set -- $key
    fp="$1:SHA256:$(echo "$2" | base64 -d | sha256sum | cut -d' ' -f1 | xxd -r -p | base64 | tr -d '=\n')"
  fi
  first=none
  ud=/mnt/config/openstack/latest/user_data
  [ -f "$ud" ] && first=$(head -n 1 "$ud" | tr -cd 'A-Za-z0-9 #!._:=/@-')
  echo "novamesh-test-guest: config-drive $dev hostname=$h key=$fp user-data=${first:-none}"
}
configdrive
# The network interfaces, whenever they change.
nics() {
  for n in /sys/class/net/*; do
    [ "${n##*/}" = lo ] || printf ' %s=%s' "${n##*/}" "$(cat "$n/address" 2>/dev/null)"
  done
}
# A DHCP client on every interface without one (udhcpc stays in the
# foreground of its subshell, asking again every second until it has a lease).
# The client of an interface that is gone, or was replaced by another of the
# same name (another ifindex), is stopped first.
dhcp() {
  for f in /tmp/udhcpc.*.pid; do
    [ -e "$f" ] || continue
    n=${f#/tmp/udhcpc.}
    n=${n%.pid}
    if [ "$(cat "/sys/class/net/$n/ifindex" 2>/dev/null)" != "$(cat "/tmp/udhcpc.$n.ifindex")" ]; then
      kill "$(cat "$f")" 2>/dev/null
      rm -f "$f" "/tmp/udhcpc.$n.ifindex"
    fi
  done
  for n in /sys/class/net/*; do
    n=${n##*/}
    [ "$n" = lo ] && continue
    pid=$(cat "/tmp/udhcpc.$n.pid" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && continue
    ip link set "$n" up
    udhcpc -f -i "$n" -s /etc/udhcpc.script -T 1 -A 1 -t 3 \
      -O staticroutes -O mtu >>"/tmp/udhcpc.$n.log" 2>&1 &
    echo $! >"/tmp/udhcpc.$n.pid"
    cat "/sys/class/net/$n/ifindex" >"/tmp/udhcpc.$n.ifindex"
  done
}
# The virtio disks with their sizes (sectors of 512 bytes in sysfs).
disks() {
  for d in /sys/block/vd*; do
    [ -e "$d" ] && printf ' %s=%s' "${d##*/}" "$(($(cat "$d/size") * 512))"
  done
}
# What a disk starts with: printable characters of its first 64 bytes.
head_of() {
  dd if="/dev/$1" bs=64 count=1 2>/dev/null | tr -cd 'A-Za-z0-9 ._:=/-'
}
( last=-; lastdisks=-; seen=" "; while :; do
    now=$(nics)
    if [ "$now" != "$last" ]; then
      echo "novamesh-test-guest: nics${now:- none}"
      last=$now
      dhcp
    fi
    d=$(disks)
    if [ "$d" != "$lastdisks" ]; then
      echo "novamesh-test-guest: disks${d:- none}"
      lastdisks=$d
      for b in /sys/block/vd*; do
        [ -e "$b" ] || continue
        b=${b##*/}
        case "$seen" in *" $b "*) continue ;; esac
        echo "novamesh-test-guest: disk $b head=$(head_of "$b")"
      done
      seen=" "
      for b in /sys/block/vd*; do [ -e "$b" ] && seen="$seen${b##*/} "; done
    fi
    usleep 500000
  done ) &
if [ "$tick" != 0 ]; then
  ( while sleep "$tick"; do echo "novamesh-test-guest: alive uptime=$(up)"; done ) &
fi

if [ -n "$button" ]; then
  # Blocks until the button sends an input event (a press).
  dd of=/dev/null bs=24 count=1 <&3 2>/dev/null
  echo "novamesh-test-guest: power button"
else
  echo "novamesh-test-guest: no power button device; waiting for a hard stop"
  while :; do sleep 3600; done
fi
sync
poweroff -f
while :; do sleep 3600; done
EOF
chmod 755 "$root/init"

mkdir -p "$OUT"
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc -R 0:0 --quiet) | gzip -9n >"$work/initrd.img"
cp "$work/pkg/boot/vmlinuz-$kver" "$work/vmlinuz"
qemu-img create -q -f qcow2 "$work/disk.qcow2" "$DISK_SIZE"
echo "$kver" >"$work/kernel-version"
for f in vmlinuz initrd.img disk.qcow2 kernel-version; do
  mv -f "$work/$f" "$OUT/$f"
  touch "$OUT/$f"
done
echo "build-test-guest: built in $OUT (kernel $kver)"
