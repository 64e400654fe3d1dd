#!/usr/bin/env bash
# Makes sure MariaDB (127.0.0.1:3306) and NATS with JetStream (127.0.0.1:4222)
# are running: starts them when installed, installs them from Debian's packages
# when missing. Safe to run again.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&-; }
need_root() { if [ "$(id -u)" -ne 0 ]; then echo "sudo"; fi; }
SUDO=$(need_root)

. "$(dirname "$0")/apt-missing.sh"
apt_install() { apt_install_missing ensure-services "$@"; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  echo "ensure-services: nothing listens on 127.0.0.1:$1 after starting $2" >&2
  return 1
}

if ! port_open 3306; then
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "ensure-services: installing MariaDB (mariadb-server) from Debian's packages"
    apt_install mariadb-server
  fi
  echo "ensure-services: starting MariaDB"
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port 3306 mariadbd
fi

# The binary is needed even when something else serves 4222: the all-in-one
# and the tests run nats-servers of their own that require credentials.
if [ ! -x /usr/sbin/nats-server ] && ! command -v nats-server >/dev/null; then
  echo "ensure-services: installing nats-server from Debian's packages"
  apt_install nats-server
fi
if ! port_open 4222; then
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  echo "ensure-services: starting nats-server with JetStream"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 nats-server
fi
