#!/usr/bin/env bash
# The serving benchmark against llama.cpp's llama-server and llamac serve, one after the other on the same
# machine and model, with the same llamac bench-serve sweep; prints both tables.
#
#   scripts/bench-serve-peer.sh LLAMA_SERVER_BINARY MODEL.gguf [bench-serve options]
#
# Default sweep: --concurrency 1,4,16,64 --input-len 64 --output-len 32 (num-prompts 2 x concurrency; about
# 10 minutes per server for a 1B Q4_0 model on 2 busy cores).
# Options after MODEL go to bench-serve and replace those defaults one by one.
# Environment: THREADS (default 2) for both servers, SLOTS (default 64) parallel sequences of each,
# LLAMAC (default build/llamac), OUT (default bench-serve-peer.out: tables and JSON files go there),
# LLAMA_SERVER_ARGS / LLAMAC_SERVE_ARGS extra arguments for each server.
# llamac's side runs only when `llamac serve` exists in that build.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
PEER_BIN="$1"
MODEL="$2"
shift 2
cd "$(dirname "$0")/.."
LLAMAC="${LLAMAC:-build/llamac}"
THREADS="${THREADS:-2}"
SLOTS="${SLOTS:-64}"
OUT="${OUT:-bench-serve-peer.out}"
[ -x "$PEER_BIN" ] || { echo "bench-serve-peer: error: $PEER_BIN is not an executable" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "bench-serve-peer: error: no model $MODEL" >&2; exit 1; }
[ -x "$LLAMAC" ] || { echo "bench-serve-peer: error: no $LLAMAC (build llamac first)" >&2; exit 1; }
mkdir -p "$OUT"

# The servers' context depends on the lengths, so the script reads them: the caller's lengths and levels
# replace the defaults by name; other options pass through to bench-serve.
declare -A opt=([--concurrency]="1,4,16,64" [--input-len]=64 [--output-len]=32)
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --concurrency|--input-len|--output-len) opt[$1]="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
BENCH_ARGS=(--concurrency "${opt[--concurrency]}" --input-len "${opt[--input-len]}" --output-len "${opt[--output-len]}" "${extra[@]}")
# Every slot must hold one request: prompt (and its BOS), answer, and room for a chat template.
CTX_PER_SLOT=$(( ${opt[--input-len]} + ${opt[--output-len]} + 64 ))

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

SERVER_PID=""
CLIENT_PID=""
stop_server() {
  if [ -n "$CLIENT_PID" ]; then
    kill "$CLIENT_PID" 2>/dev/null || true
    CLIENT_PID=""
  fi
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

# Waits until GET /v1/models answers 200 (both servers answer 503 or nothing while loading).
wait_ready() {
  local url="$1"
  for _ in $(seq 1 600); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "bench-serve-peer: error: the server exited while starting (see its log)" >&2
      return 1
    fi
    if curl -sf -o /dev/null "$url/v1/models"; then return 0; fi
    sleep 1
  done
  echo "bench-serve-peer: error: the server did not answer within 600 s" >&2
  return 1
}

run_side() {
  local name="$1" url="$2"
  echo "== $name: $LLAMAC bench-serve --url $url ${BENCH_ARGS[*]}"
  # In the background, so a SIGINT/SIGTERM reaches the trap at once rather than after the sweep.
  "$LLAMAC" bench-serve --url "$url" "${BENCH_ARGS[@]}" --json "$OUT/$name.json" >"$OUT/$name.txt" &
  CLIENT_PID=$!
  wait "$CLIENT_PID" || echo "bench-serve-peer: bench-serve exited with status $?" >&2
  CLIENT_PID=""
  cat "$OUT/$name.txt"
}

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
PORT=$(free_port)
# shellcheck disable=SC2086
"$PEER_BIN" -m "$MODEL" -t "$THREADS" --host 127.0.0.1 --port "$PORT" -np "$SLOTS" -c $((SLOTS * CTX_PER_SLOT)) \
  ${LLAMA_SERVER_ARGS:-} >"$OUT/llama-server.log" 2>&1 &
SERVER_PID=$!
wait_ready "http://127.0.0.1:$PORT"
echo "== llama-server: $("$PEER_BIN" --version 2>&1 | grep -m1 -i version || true)"
run_side llama-server "http://127.0.0.1:$PORT"
stop_server

if "$LLAMAC" serve --help >/dev/null 2>&1; then
  PORT=$(free_port)
  # shellcheck disable=SC2086
  "$LLAMAC" serve -m "$MODEL" -t "$THREADS" --host 127.0.0.1 --port "$PORT" --max-seqs "$SLOTS" -c "$CTX_PER_SLOT" \
    ${LLAMAC_SERVE_ARGS:-} >"$OUT/llamac-serve.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "http://127.0.0.1:$PORT"
  run_side llamac-serve "http://127.0.0.1:$PORT"
  stop_server
else
  echo "== llamac serve: not in $LLAMAC yet, skipped"
fi

echo
echo "== summary ($OUT/*.txt, *.json)"
for side in llama-server llamac-serve; do
  [ -f "$OUT/$side.txt" ] || continue
  echo "$side:"
  sed -n '/^| concurrency/,$p' "$OUT/$side.txt"
done
