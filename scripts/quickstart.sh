#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to generated text: installs the build dependencies,
# builds llamac (Release), and generates a story.
#   bash scripts/quickstart.sh [MODEL] [PROMPT]
# MODEL defaults to ../shared/models/stories260K/stories260K.gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
MODEL=${1:-../shared/models/stories260K/stories260K.gguf}
PROMPT=${2:-Once upon a time}
./build/llamac generate -m "$MODEL" -p "$PROMPT" -n 256
