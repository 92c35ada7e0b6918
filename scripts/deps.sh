#!/usr/bin/env bash
# deps.sh - install what qhost needs on Debian 12 (only the packages that are missing).
# Runs apt-get directly as root, through sudo otherwise.
set -euo pipefail
pkgs=(gcc make pkg-config meson ninja-build libiniparser-dev libcmocka-dev libjansson-dev zlib1g-dev
      dataset-fashion-mnist)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "deps.sh: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=900 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
