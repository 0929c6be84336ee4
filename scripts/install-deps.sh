#!/usr/bin/env bash
# Installs what llamac needs to build and test on Debian 12, from Debian's packages only.
# Safe to run again: it installs only what is missing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libcjson-dev libcmocka-dev libmicrohttpd-dev libcurl4-openssl-dev
      python3 python3-numpy python3-sentencepiece python3-regex python3-jinja2 python3-pytest
      gnuplot-nox)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node.js runs the reference tokenizer (npm tiktoken) and llama.cpp's Node binding in the tests. A
# node already on the PATH is used as it is; otherwise Debian's (whose npm is a package of its own).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
# node-llama-cpp needs Node.js 20 or later (Debian 12's own nodejs is 18).
if ! node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)'; then
  echo "install-deps: Node.js $(node --version) is too old: the llama.cpp peer (node-llama-cpp) needs 20 or later" >&2
  exit 1
fi
# From the npm registry, pinned by each folder's package-lock.json: npm tiktoken (tests/node), the
# tokenizer tests' reference; node-llama-cpp's prebuilt llama.cpp (tests/llamacpp), the peer the tests
# and benchmarks compare with; the official openai client (tests/server), which drives llamac serve.
for sub in node llamacpp server; do
  dir="$(cd "$(dirname "$0")/../tests/$sub" && pwd)"
  if [ ! -d "$dir/node_modules" ]; then
    echo "install-deps: npm ci in tests/$sub"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done
