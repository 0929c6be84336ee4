#!/usr/bin/env bash
# llama.cpp as a peer: runs tests/llamacpp/run.mjs (node-llama-cpp's prebuilt llama.cpp), one JSON answer
# on stdout. Installs the npm package first if it is missing and --install is given.
#
#   scripts/llamacpp-peer.sh [--install] info
#   scripts/llamacpp-peer.sh tokenize MODEL TEXT [--special] [--no-bos]
#   scripts/llamacpp-peer.sh greedy MODEL (--ids 1,2,3 | -p TEXT) -n 16
#   scripts/llamacpp-peer.sh logits MODEL (--ids 1,2,3 | -p TEXT) [--top K]
#   scripts/llamacpp-peer.sh bench MODEL -p 512 -n 64 --threads 2 [-r 3]
#   scripts/llamacpp-peer.sh batch REQUESTS.jsonl
#   scripts/llamacpp-peer.sh quantize IN.gguf OUT.gguf Q4_K_M [--pure] [--threads N]   (llama-quantize's library
#                            call, tests/llamacpp/llama_quantize.py; exit status only)
# See tests/llamacpp/README.md.
set -euo pipefail
DIR="$(cd "$(dirname "$0")/../tests/llamacpp" && pwd)"
if [ "${1:-}" = "--install" ]; then
  shift
  if [ ! -d "$DIR/node_modules/node-llama-cpp" ]; then
    (cd "$DIR" && npm ci --no-audit --no-fund >&2)
  fi
fi
if ! command -v node >/dev/null 2>&1; then
  echo "llamacpp-peer: error: node is not installed (Node.js >= 20)" >&2
  exit 1
fi
if [ ! -d "$DIR/node_modules/node-llama-cpp" ]; then
  echo "llamacpp-peer: error: the llama.cpp peer is not installed: run (cd tests/llamacpp && npm ci --no-audit --no-fund), or pass --install" >&2
  exit 1
fi
if [ "${1:-}" = "quantize" ]; then
  shift
  exec python3 "$DIR/llama_quantize.py" "$@"
fi
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
exec node "$DIR/run.mjs" "$@"
