#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to generated text: installs the build dependencies,
# builds llamac (Release) and its Python package's library, makes `import llamac` work, and generates a story.
#   bash scripts/quickstart.sh [MODEL] [PROMPT]
# MODEL defaults to ../shared/models/stories260K/stories260K.gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
# The Python package: python/ on the user's module path through a .pth file (no package index needed),
# so `import llamac` works from any directory; it loads build/libllamac.so.
SITE=$(python3 -c 'import site; print(site.getusersitepackages())')
mkdir -p "$SITE"
echo "$PWD/python" > "$SITE/llamac.pth"
python3 -c 'import llamac' && echo "quickstart: python3 -c 'import llamac' works (python/ listed in $SITE/llamac.pth)" >&2
MODEL=${1:-../shared/models/stories260K/stories260K.gguf}
PROMPT=${2:-Once upon a time}
./build/llamac generate -m "$MODEL" -p "$PROMPT" -n 256
