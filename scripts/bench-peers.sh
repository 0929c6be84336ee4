#!/usr/bin/env bash
# llamac's single-sequence prefill and decode against llama.cpp and ik_llama.cpp, in one run on the same
# files: for each model, `llamac bench` with the peers' `llama-bench` run between its repetitions (--peer),
# so every figure of a table comes from the same minutes. Then, for each depth, decode after a context
# of that many tokens: `llamac bench --decode-after D` against `llama-batched-bench -npp D -ntg N -npl 1`
# (its S_TG column), which the older llama-bench (no -d) lacks.
#
#   scripts/bench-peers.sh MODEL.gguf...
#
# Environment: LLAMA_CPP (folder of llama.cpp's llama-bench and llama-batched-bench) and IK_LLAMA (the same
# for ik_llama.cpp), either may be empty to leave that peer out; THREADS (default 2), REPS (default 3),
# PROMPT (default 512), GEN (default 64), DEPTHS (default empty; e.g. "2048 8192"), LLAMAC (default
# build/llamac), LLAMAC_BENCH_ARGS (extra arguments for llamac bench, e.g. --kv-type f16).
# Peers are built by the caller (`cmake -B build -DGGML_NATIVE=ON` and `cmake --build build --target
# llama-bench llama-batched-bench`); they are never part of the test suite.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
cd "$(dirname "$0")/.."
LLAMAC="${LLAMAC:-build/llamac}"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
PROMPT="${PROMPT:-512}"
GEN="${GEN:-64}"
DEPTHS="${DEPTHS:-}"
[ -x "$LLAMAC" ] || { echo "bench-peers: error: no $LLAMAC (build llamac first)" >&2; exit 1; }
for dir in "${LLAMA_CPP:-}" "${IK_LLAMA:-}"; do
  [ -z "$dir" ] || [ -x "$dir/llama-bench" ] || { echo "bench-peers: error: no $dir/llama-bench" >&2; exit 1; }
done

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores online, $THREADS threads"
for name in LLAMA_CPP IK_LLAMA; do
  dir="${!name:-}"
  [ -n "$dir" ] && echo "# $name: $dir ($(cd "$dir" && git -C .. log -1 --format=%h 2>/dev/null || echo 'build'))"
done
echo

for model in "$@"; do
  [ -f "$model" ] || { echo "bench-peers: error: no model $model" >&2; exit 1; }
  peer=""
  for dir in "${LLAMA_CPP:-}" "${IK_LLAMA:-}"; do
    [ -n "$dir" ] && peer+="echo '## $dir'; $dir/llama-bench -m $model -p $PROMPT -n $GEN -t $THREADS -r 1 -o md 2>/dev/null; "
  done
  echo "## $model"
  # shellcheck disable=SC2086
  "$LLAMAC" bench -m "$model" -p "$PROMPT" -n "$GEN" -t "$THREADS" --reps "$REPS" --md ${LLAMAC_BENCH_ARGS:-} \
    ${peer:+--peer "$peer"}
  for d in $DEPTHS; do
    peer=""
    for dir in "${LLAMA_CPP:-}" "${IK_LLAMA:-}"; do
      [ -n "$dir" ] && peer+="echo '## $dir'; $dir/llama-batched-bench -m $model -c $((d + GEN + 64)) -b 2048 -ub 512 -npp $d -ntg $GEN -npl 1 -t $THREADS 2>&1 | grep '^|'; "
    done
    # shellcheck disable=SC2086
    "$LLAMAC" bench -m "$model" -p "$PROMPT" -n "$GEN" -t "$THREADS" --reps "$REPS" --md --decode-after "$d" ${LLAMAC_BENCH_ARGS:-} \
      ${peer:+--peer "$peer"}
  done
  echo
done
