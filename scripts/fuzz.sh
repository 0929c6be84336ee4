#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/fuzz_*.c; clang with ASan + UBSan) and runs each one for a bounded
# time on a scratch copy of its seed corpus (fuzz/corpus/<name>/ is never modified).
#
#   scripts/fuzz.sh                     every target, FUZZ_SECONDS each (default 60)
#   FUZZ_SECONDS=300 scripts/fuzz.sh gguf
#
# Environment:
#   FUZZ_SECONDS     time per target (default 60)
#   FUZZ_BUILD_DIR   build directory (default build-fuzz)
#   FUZZ_OUT         where crash/timeout/oom inputs and logs are kept (default $FUZZ_BUILD_DIR/fuzz-out)
#   FUZZ_NICE        nice level of the fuzzing processes (default 10)
#   FUZZ_JOBS        parallel compile jobs (default 2)
#   FUZZ_EXTRA_CFLAGS  added to the compile flags, e.g. -fno-sanitize=float-cast-overflow to look past
#                    a known finding (reconfigures the build directory)
#   LLAMAC_FUZZ_SKIP_SAMPLER=1   skip the sampling step (to fuzz the loaders past a known sampler bug)
#
# Exits non-zero when any target finds a crash, a sanitizer report, a timeout (>10 s on one input) or
# an RSS above 2 GiB; the input that did it is copied to $FUZZ_OUT and its reproducer command printed.
# Needs clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
OUT=${FUZZ_OUT:-$BUILD/fuzz-out}
NICE=${FUZZ_NICE:-10}
JOBS=${FUZZ_JOBS:-2}

if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is not installed (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        targets+=("${n#fuzz_}")
    done
fi

# CMakeLists.txt instruments the library for coverage too (-fsanitize=fuzzer-no-link) when
# LLAMAC_FUZZ is on; without that libFuzzer only sees the harness and mutates blindly.
mkdir -p "$BUILD"
cmake -B "$BUILD" -DCMAKE_C_COMPILER=clang -DLLAMAC_FUZZ=ON -DLLAMAC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS="-O1 -g ${FUZZ_EXTRA_CFLAGS:-}" >"$BUILD/fuzz-configure.log" 2>&1 ||
    { cat "$BUILD/fuzz-configure.log" >&2; exit 1; }
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "fuzz_$t"); done
cmake --build "$BUILD" -j"$JOBS" "${build_targets[@]}" >"$BUILD/fuzz-build.log" 2>&1 ||
    { tail -n 40 "$BUILD/fuzz-build.log" >&2; echo "fuzz.sh: build failed" >&2; exit 1; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/llamac-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Dictionaries: the names the loaders look for, so mutations can produce them.
cat >"$work/gguf.dict" <<'EOF'
"GGUF"
"general.architecture"
"general.alignment"
"general.name"
"llama"
"gpt2"
"llama-bpe"
"llama.block_count"
"llama.context_length"
"llama.embedding_length"
"llama.feed_forward_length"
"llama.attention.head_count"
"llama.attention.head_count_kv"
"llama.attention.layer_norm_rms_epsilon"
"llama.rope.dimension_count"
"llama.rope.freq_base"
"llama.vocab_size"
"tokenizer.ggml.model"
"tokenizer.ggml.pre"
"tokenizer.ggml.tokens"
"tokenizer.ggml.scores"
"tokenizer.ggml.token_type"
"tokenizer.ggml.merges"
"tokenizer.ggml.bos_token_id"
"tokenizer.ggml.eos_token_id"
"tokenizer.ggml.unknown_token_id"
"tokenizer.ggml.padding_token_id"
"tokenizer.ggml.add_bos_token"
"tokenizer.ggml.add_space_prefix"
"token_embd.weight"
"output_norm.weight"
"output.weight"
"rope_freqs.weight"
"blk.0.attn_norm.weight"
"blk.0.attn_q.weight"
"blk.0.attn_k.weight"
"blk.0.attn_v.weight"
"blk.0.attn_output.weight"
"blk.0.ffn_norm.weight"
"blk.0.ffn_gate.weight"
"blk.0.ffn_up.weight"
"blk.0.ffn_down.weight"
"<0x0A>"
"\xe2\x96\x81"
"<|eot_id|>"
"<|begin_of_text|>"
"\xff\xff\xff\xff\xff\xff\xff\xff"
"\x00\x00\x00\x00\x00\x00\x00\x80"
EOF
cat >"$work/llama2c.dict" <<'EOF'
"\x0a<s>\x0a"
"\x0a</s>\x0a"
"<unk>"
"<0x0A>"
"\xff\xff\xff\xff"
"\x00\x00\x00\x80"
"\xff\xff\xff\x7f"
"{\"model\":{\"type\":\"BPE\",\"vocab\":{"
"\"merges\":["
"\"added_tokens\":["
"\"pre_tokenizer\":"
"\"special\":true"
"\"id\":"
"\"content\":"
"GGUF"
EOF

status=0
for t in "${targets[@]}"; do
    bin="$ROOT/$BUILD/fuzz_$t"
    corpus="$work/corpus-$t"
    mkdir -p "$corpus"
    if [ -d "fuzz/corpus/$t" ]; then cp -r "fuzz/corpus/$t/." "$corpus/"; fi
    dict=()
    if [ -f "$work/$t.dict" ]; then dict=(-dict="$work/$t.dict"); fi
    log="$OUT/fuzz_$t.log"
    echo "fuzz.sh: fuzz_$t for ${FUZZ_SECONDS}s ($(find "$corpus" -type f | wc -l) seeds)"
    rc=0
    (cd "$work" && nice -n "$NICE" "$bin" "$corpus" "${dict[@]}" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
        -timeout=10 -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/artifact-$t-") >"$log" 2>&1 || rc=$?
    grep -E "^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" | sed 's/^/  /' || true
    shopt -s nullglob
    arts=("$work"/artifact-"$t"-*)
    shopt -u nullglob
    if [ $rc -ne 0 ] || [ ${#arts[@]} -gt 0 ]; then
        status=1
        echo "fuzz.sh: fuzz_$t FAILED (exit $rc); log: $log" >&2
        grep -E "ERROR: |runtime error:|SUMMARY:|==[0-9]+== ?ERROR|deadly signal|timeout|out-of-memory" "$log" | head -n 8 | sed 's/^/  /' >&2 || true
        for a in "${arts[@]}"; do
            cp "$a" "$OUT/"
            echo "  input kept: $OUT/$(basename "$a")" >&2
            echo "  reproduce:  $bin $OUT/$(basename "$a")" >&2
        done
    fi
done
if [ $status -eq 0 ]; then echo "fuzz.sh: no crash in ${#targets[@]} target(s)"; fi
exit $status
