#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/fuzz_*.c; clang with ASan + UBSan) and runs them.
#
#   scripts/fuzz.sh                      bounded run (CI): every target, one after the other, on a scratch
#                                        copy of its seeds (fuzz/corpus/ is never modified)
#   scripts/fuzz.sh gguf gguf_parse      some targets
#   scripts/fuzz.sh --list               the targets, their kind, dictionaries and seeds
#   scripts/fuzz.sh --long [OPTIONS] [TARGET...]
#                                        a campaign whose corpus is kept between runs, outside the repository
#
# Each target's source names its kind, dictionaries (fuzz/dict/NAME.dict, concatenated) and seed
# folders (fuzz/corpus/NAME/) in one line:  FUZZ: speed=fast dict=json,safetensors seeds=safetensors
# "fast" targets only parse (thousands of inputs a second); "e2e" ones load and run whole models.
#
# Options (bounded run and --long):
#   --seconds S   time per target (default: bounded run FUZZ_SECONDS for e2e targets, FUZZ_FAST_SECONDS
#                 for fast ones; --long 3600); 0 skips fuzzing (--long --merge --seconds 0: merge only)
#   --runs N      stop each target after N inputs (-runs=N), within the time limit
#   --timeout S   per-input limit (default FUZZ_TIMEOUT, 60)
# Options for --long:
#   --corpus DIR  where each target's corpus lives, as DIR/TARGET (default $FUZZ_CORPUS_DIR, else
#                 ${XDG_CACHE_HOME:-~/.cache}/llamac-fuzz/corpus); the seeds are added to it at every start
#   --fork N      libFuzzer's fork mode with N worker processes
#   --keep-going  with --fork: a crash, timeout or OOM is recorded and the campaign goes on
#   --merge       afterwards, add to fuzz/corpus/TARGET the campaign inputs (of at most
#                 FUZZ_MERGE_MAX_BYTES, default 4096) that reach coverage the seeds do not (smallest
#                 first; existing seeds are never removed)
#   -- FLAGS      passed to libFuzzer as they are (e.g. -jobs=4 -workers=2, -max_len=4096)
#
# Environment:
#   FUZZ_SECONDS       time per end-to-end target in the bounded run (default 60)
#   FUZZ_FAST_SECONDS  time per fast target in the bounded run (default 10)
#   FUZZ_TIMEOUT       per-input timeout in seconds (default 60)
#   FUZZ_BUILD_DIR     build directory (default build-fuzz)
#   FUZZ_OUT           where crash/timeout/oom inputs and logs are kept (default $FUZZ_BUILD_DIR/fuzz-out)
#   FUZZ_NICE          nice level of the fuzzing processes (default 10)
#   FUZZ_JOBS          parallel compile jobs (default 2)
#   FUZZ_EXTRA_CFLAGS  added to the compile flags, e.g. -fno-sanitize=float-cast-overflow to look past
#                      a known finding (reconfigures the build directory)
#   LLAMAC_FUZZ_SKIP_SAMPLER=1   skip the sampling step (to fuzz the loaders past a known sampler bug)
#
# Exits non-zero when any target finds a crash, a sanitizer report, a leak, an RSS above 2 GiB, or a
# hang: an input that exceeds the per-input timeout is run again alone, once, and only fails the run if
# it times out again (on a loaded machine a fuzzing process can be starved past the limit; a real hang
# cannot finish alone). Inputs that took over 10 s but finished (libFuzzer's slow-unit-*) are kept and
# reported without failing. Every kept input comes with its reproducer command.
# Needs clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
OUT=${FUZZ_OUT:-$BUILD/fuzz-out}
NICE=${FUZZ_NICE:-10}
JOBS=${FUZZ_JOBS:-2}
TIMEOUT=${FUZZ_TIMEOUT:-60}
MERGE_MAX=${FUZZ_MERGE_MAX_BYTES:-4096}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

long=0 seconds="" runs="" fork="" keep_going=0 merge=0 list=0
corpus_root=${FUZZ_CORPUS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llamac-fuzz/corpus}
targets=() extra=()
while [ $# -gt 0 ]; do
    case $1 in
    --long) long=1 ;;
    --seconds) seconds=${2:?}; shift ;;
    --hours) seconds=$(( ${2:?} * 3600 )); shift ;;
    --runs) runs=${2:?}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift ;;
    --corpus) corpus_root=${2:?}; shift ;;
    --fork) fork=${2:?}; shift ;;
    --keep-going) keep_going=1 ;;
    --merge) merge=1 ;;
    --list) list=1 ;;
    -h|--help) usage ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage ;;
    *) targets+=("$1") ;;
    esac
    shift
done
for n in "$seconds" "$runs" "$fork" "$TIMEOUT" "$MERGE_MAX"; do
    [[ -z $n || $n =~ ^[0-9]+$ ]] || { echo "fuzz.sh: not a whole number: $n" >&2; exit 2; }
done
if [ $long -eq 0 ] && { [ -n "$fork" ] || [ $merge -eq 1 ] || [ $keep_going -eq 1 ]; }; then
    echo "fuzz.sh: --fork, --keep-going and --merge go with --long" >&2
    exit 2
fi

# The "FUZZ: key=value ..." line of a target's source; meta TARGET KEY DEFAULT prints one value.
meta() {
    local line v
    line=$(grep -m1 -o 'FUZZ: .*' "fuzz/fuzz_$1.c" || true)
    v=$(sed -n "s/.*[[:space:]]$2=\([^[:space:]]*\).*/\1/p" <<<"$line")
    echo "${v:-$3}"
}

if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        targets+=("${n#fuzz_}")
    done
fi
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_$t.c" ] || { echo "fuzz.sh: no target fuzz/fuzz_$t.c" >&2; exit 2; }
done
if [ $list -eq 1 ]; then
    for t in "${targets[@]}"; do
        printf '%-20s %-5s dict=%-26s seeds=%s\n' "$t" "$(meta "$t" speed e2e)" "$(meta "$t" dict '')" "$(meta "$t" seeds "$t")"
    done
    exit 0
fi

if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is not installed (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
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

# Copies every seed folder of target $1 into folder $2 (without replacing what is there).
add_seeds() {
    local s
    for s in $(meta "$1" seeds "$1" | tr , ' '); do
        if [ -d "fuzz/corpus/$s" ]; then cp -rn "fuzz/corpus/$s/." "$2/"; fi
    done
}

# The target's dictionaries, concatenated into one file (libFuzzer takes one); prints the flag.
dict_flag() {
    local d f="$work/$1.dict"
    : >"$f"
    for d in $(meta "$1" dict '' | tr , ' '); do
        [ -f "fuzz/dict/$d.dict" ] || { echo "fuzz.sh: fuzz_$1 names a missing fuzz/dict/$d.dict" >&2; exit 1; }
        cat "fuzz/dict/$d.dict" >>"$f"
    done
    if [ -s "$f" ]; then echo "-dict=$f"; fi
}

# An input that timed out under fuzzing, run again alone with the same limit: 0 if it now finishes.
# (The outer timeout only guards against libFuzzer's own alarm not firing.)
confirm_timeout() {
    local bin=$1 input=$2 log=$3
    timeout -k 10 $((2 * TIMEOUT + 60)) nice -n "$NICE" "$bin" -timeout="$TIMEOUT" -rss_limit_mb=2048 "$input" >"$log" 2>&1
}

status=0
total_seconds=0
for t in "${targets[@]}"; do
    bin="$ROOT/$BUILD/fuzz_$t"
    speed=$(meta "$t" speed e2e)
    if [ -n "$seconds" ]; then
        secs=$seconds
    elif [ $long -eq 1 ]; then
        secs=3600
    elif [ "$speed" = fast ]; then
        secs=${FUZZ_FAST_SECONDS:-10}
    else
        secs=${FUZZ_SECONDS:-60}
    fi
    total_seconds=$((total_seconds + secs))
    if [ $long -eq 1 ]; then
        corpus="$corpus_root/$t"
        mkdir -p "$corpus"
        corpus=$(cd "$corpus" && pwd)
        log="$OUT/fuzz_$t.long.log"
        prefix="$OUT/$t-"
        rundir="$OUT/run-$t" # -jobs writes its fuzz-N.log files into the working folder
    else
        corpus="$work/corpus-$t"
        log="$OUT/fuzz_$t.log"
        prefix="$work/artifact-$t-"
        rundir="$work"
    fi
    mkdir -p "$corpus" "$rundir"
    add_seeds "$t" "$corpus"
    flags=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout="$TIMEOUT" -max_len=65536 -print_final_stats=1
           -artifact_prefix="$prefix")
    d=$(dict_flag "$t")
    if [ -n "$d" ]; then flags+=("$d"); fi
    if [ -n "$runs" ]; then flags+=(-runs="$runs"); fi
    if [ -n "$fork" ]; then flags+=(-fork="$fork"); fi
    if [ $keep_going -eq 1 ]; then flags+=(-ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1); fi
    n_before=$(find "$corpus" -type f | wc -l)
    start_mark="$work/start-$t"
    touch "$start_mark"
    rc=0
    if [ "$secs" -gt 0 ]; then
        echo "fuzz.sh: fuzz_$t ($speed) for ${secs}s${runs:+ or $runs runs} ($n_before inputs in $corpus)"
        (cd "$rundir" && nice -n "$NICE" "$bin" "$corpus" "${flags[@]}" "${extra[@]}") >"$log" 2>&1 || rc=$?
    else
        log=/dev/null # --seconds 0: no fuzzing (with --long --merge: only the merge), last run's log kept
    fi
    grep -E "^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$log" |
        sed 's/^/  /' || true

    # What this run left behind (a long campaign's folder also holds earlier runs' inputs), kept in $OUT.
    mapfile -t found < <(find "$(dirname "$prefix")" -maxdepth 1 -type f -name "$(basename "$prefix")*" \
                         ! -name '*.log' -newer "$start_mark" | sort)
    failed=0
    for a in "${found[@]}"; do
        if [ "$(dirname "$a")" != "$OUT" ]; then cp "$a" "$OUT/"; a="$OUT/$(basename "$a")"; fi
        case ${a#"$(dirname "$a")/"} in
        *slow-unit-*)
            echo "fuzz.sh: warning: fuzz_$t: an input took over 10 s but finished: $a" >&2
            continue ;;
        *timeout-*)
            if confirm_timeout "$bin" "$a" "$a.rerun.log"; then
                echo "fuzz.sh: warning: fuzz_$t: an input passed the ${TIMEOUT}s limit under fuzzing but finished" \
                     "when run again alone (a starved process, not a hang): $a" >&2
                continue
            fi
            echo "fuzz.sh: fuzz_$t: an input times out again when run alone: a hang" >&2 ;;
        esac
        failed=1
        echo "  input kept: $a" >&2
        echo "  reproduce:  $bin $a" >&2
    done
    # A non-zero exit that left no failing input is a failure too, unless it was a timeout (handled above).
    if [ $rc -ne 0 ] && [ $failed -eq 0 ] && ! grep -q "ALARM: working on the last Unit" "$log"; then failed=1; fi
    if [ $failed -ne 0 ]; then
        status=1
        echo "fuzz.sh: fuzz_$t FAILED (exit $rc); log: $log" >&2
        grep -E "ERROR: |runtime error:|SUMMARY:|==[0-9]+== ?ERROR|deadly signal|ALARM|out-of-memory" "$log" |
            head -n 8 | sed 's/^/  /' >&2 || true
    fi

    if [ $long -eq 1 ]; then
        echo "  corpus: $corpus ($n_before -> $(find "$corpus" -type f | wc -l) inputs)"
        if [ $merge -eq 1 ]; then
            # Merge into a copy of every seed folder so that only coverage the seeds lack comes in, then
            # keep what is new in the target's own folder.
            base="$work/merge-$t"
            rm -rf "$base"
            mkdir -p "$base" "fuzz/corpus/$t"
            add_seeds "$t" "$base"
            ls "$base" | sort >"$work/before-$t"
            # Only small inputs are candidates, so the repository corpus stays small.
            cand="$work/candidates-$t"
            mkdir -p "$cand"
            find "$corpus" -maxdepth 1 -type f -size -$((MERGE_MAX + 1))c -exec cp -t "$cand" {} +
            nice -n "$NICE" "$bin" -merge=1 -timeout="$TIMEOUT" -rss_limit_mb=2048 -max_len=65536 \
                "$base" "$cand" >"$OUT/fuzz_$t.merge.log" 2>&1 ||
                { echo "fuzz.sh: merge failed, see $OUT/fuzz_$t.merge.log" >&2; status=1; continue; }
            added=0 bytes=0
            while read -r f; do
                cp "$base/$f" "fuzz/corpus/$t/$f"
                added=$((added + 1)) bytes=$((bytes + $(stat -c %s "$base/$f")))
            done < <(ls "$base" | sort | comm -13 "$work/before-$t" -)
            echo "  merged into fuzz/corpus/$t: $added inputs of at most $MERGE_MAX bytes, $bytes bytes" \
                 "(now $(du -sb "fuzz/corpus/$t" | cut -f1) bytes)"
        fi
    fi
done
if [ $status -eq 0 ]; then echo "fuzz.sh: no crash in ${#targets[@]} target(s) (${total_seconds}s of fuzzing budgeted)"; fi
exit $status
