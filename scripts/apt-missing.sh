# Sourced by the setup scripts: installs the Debian packages of a list that
# are missing, with a progress line every few packages (the whole apt output
# only on failure). Uses sudo when not root.
#
#   . scripts/apt-missing.sh
#   apt_install_missing <name for messages> <package>...

apt_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

apt_install_missing() {
  local who=$1; shift
  local missing=() p
  for p in "$@"; do apt_installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "$who: installing ${missing[*]} (and what they need) from Debian's packages"
  local log; log=$(mktemp)
  if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"; } 2>&1 |
    tee "$log" | awk -v p="$who" '
      / newly installed/ { n = $3; print p ": " n " packages to install"; fflush() }
      /^Need to get / { print p ": n" substr($0, 2); fflush() }
      /^Get:/ { g++; if (g % 20 == 0) { print p ": downloaded " g (n ? "/" n : ""); fflush() } }
      /^Setting up / { s++; if (s % 20 == 0 || s == n) { print p ": set up " s (n ? "/" n : ""); fflush() } }'; then
    cat "$log" >&2; rm -f "$log"; echo "$who: installing ${missing[*]} failed" >&2; return 1
  fi
  rm -f "$log"
}
