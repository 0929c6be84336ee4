#!/usr/bin/env bash
# Installs what llamac needs to build and test on Debian 12, from Debian's packages only.
# Safe to run again: it installs only what is missing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libcjson-dev libcmocka-dev
      python3 python3-numpy python3-sentencepiece python3-regex)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
