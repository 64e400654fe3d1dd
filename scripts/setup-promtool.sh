#!/usr/bin/env bash
# Puts promtool, the Prometheus tool that checks a metrics exposition, at
# DIR/promtool (default /var/cache/novamesh/promtool) and prints its path:
# taken from Debian's prometheus package with apt-get download and
# dpkg-deb -x, so nothing is installed and no Prometheus server is set up.
# Skips the download when it is there already; safe to run again.
# Usage: setup-promtool.sh [DIR]
set -euo pipefail
dir=${1:-/var/cache/novamesh/promtool}
if [ -x "$dir/promtool" ]; then echo "$dir/promtool"; exit 0; fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "setup-promtool: downloading Debian's prometheus package (promtool only is kept)" >&2
if ! (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null 2>&1); then
  [ "$(id -u)" -eq 0 ] && apt-get update -qq >/dev/null 2>&1 || true
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null) ||
    { echo "setup-promtool: apt-get download prometheus failed" >&2; exit 1; }
fi
dpkg-deb -x "$work"/prometheus_*.deb "$work/pkg"
install -m 755 "$work/pkg/usr/bin/promtool" "$dir/promtool"
echo "$dir/promtool"
