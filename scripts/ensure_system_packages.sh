#!/usr/bin/env bash
# Installs PostgreSQL server binaries and redis-server from Debian packages when they are absent.
# The tests start their own throwaway servers; nothing here starts a service.
set -euo pipefail

missing=()
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  missing+=(postgresql)
fi
if ! command -v redis-server >/dev/null; then
  missing+=(redis-server)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]} from Debian packages"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo_cmd=(sudo -n); else
    echo "need root (or sudo) to install ${missing[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
# policy-rc.d keeps the packages' own services from starting: the tests never use them.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  "${sudo_cmd[@]}" bash -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  created_policy=1
fi
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ "$created_policy" -eq 1 ]; then "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d; fi
