#!/usr/bin/env bash
# Install the Debian packages the test suite starts its own instances of (PostgreSQL, Redis,
# Mosquitto with its dynamic-security plugin, nginx), when they are missing.
# As root it runs apt-get; otherwise it names what is missing and fails.
set -euo pipefail

missing=()
have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
have_pg || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
ls /usr/lib/*/mosquitto_dynamic_security.so >/dev/null 2>&1 || missing+=(mosquitto)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (install them with: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# sort -u: a package may be listed twice (mosquitto for its binary and for its plugin)
mapfile -t unique < <(printf '%s\n' "${missing[@]}" | sort -u)
apt-get install -y -qq --no-install-recommends "${unique[@]}" >/dev/null
