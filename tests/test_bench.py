#!/usr/bin/python3
"""llamac bench: the JSON fields the issue names are there and sane, and the greedy hash is the same
for every thread count and repetition (the fast paths compute the same thing), and matches the hash of the
float64 reference's greedy continuation from BOS.
"""
import json
import os
import subprocess
import sys

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
MODEL = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
KEYS = ["model", "type", "threads", "n_prompt", "n_gen", "batch", "prefill_tok_s", "decode_tok_s", "peak_rss_mb",
        "hash", "decode_gb_s", "bandwidth_gb_s"]
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


p = subprocess.run([LLAMAC, "bench", "-m", MODEL, "-p", "16,32", "-n", "24", "-t", "1,2", "--reps", "2", "--json"],
                   capture_output=True, text=True, timeout=300)
check(p.returncode == 0, "bench exits 0 (%s)" % p.stderr.strip()[-200:])
rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
check(len(rows) == 4, "one JSON line per configuration (2 prompts x 2 thread counts): %d" % len(rows))
for r in rows:
    missing = [k for k in KEYS if k not in r]
    check(not missing, "t=%s p=%s: keys present (missing %s)" % (r.get("threads"), r.get("n_prompt"), missing))
    check(r.get("prefill_tok_s", 0) > 0 and r.get("decode_tok_s", 0) > 0, "positive rates")
    check(not r.get("hash", "!").endswith("!"), "same greedy tokens on every repetition")
check(len({r["hash"] for r in rows}) == 1, "same greedy hash for every thread count and prompt length")

# The decode test generates greedily from BOS: the float64 reference forward pass (tests/ref) gives
# the expected ids independently of llamac. FNV-1a over the ids, as the bench computes it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from llama_ref import LlamaRef, greedy  # noqa: E402
ids = greedy(LlamaRef(MODEL), [1], 25)[1:]
h = 1469598103934665603
for i in ids:
    h = ((h ^ i) * 1099511628211) % (1 << 64)
check(len(ids) == 24 and rows and rows[0]["hash"] == "%016x" % h,
      "bench hash equals the hash of the float64 reference's 24 greedy ids from BOS")

# --decode-after N: the cache holds N random ids (xorshift64 seeded with 0x9e3779b97f4a7c15 ^ N, id =
# state % n_vocab), the decode starts from the greedy token after them and hashes the next -n greedy ids.
DEPTH, NGEN, VOCAB = 40, 8, 512
p = subprocess.run([LLAMAC, "bench", "-m", MODEL, "-p", "8", "-n", str(NGEN), "-t", "1", "--reps", "2", "--json",
                    "--decode-after", "0,%d" % DEPTH], capture_output=True, text=True, timeout=300)
check(p.returncode == 0, "bench --decode-after exits 0 (%s)" % p.stderr.strip()[-200:])
rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
check([r.get("n_depth") for r in rows] == [0, DEPTH], "one JSON line per depth, n_depth given: %s" % rows)
check(all(r.get("decode_tok_s", 0) > 0 and not r.get("hash", "!").endswith("!") for r in rows),
      "positive decode rates, same tokens on every repetition at every depth")
rng, prompt = 0x9e3779b97f4a7c15 ^ DEPTH, []
for _ in range(DEPTH):
    rng ^= (rng << 13) % (1 << 64)
    rng ^= rng >> 7
    rng ^= (rng << 17) % (1 << 64)
    prompt.append(rng % VOCAB)
seq = greedy(LlamaRef(MODEL), prompt, DEPTH + 1 + NGEN)
h = 1469598103934665603
for i in seq[DEPTH + 1:]:
    h = ((h ^ i) * 1099511628211) % (1 << 64)
check(len(rows) == 2 and rows[1].get("hash") == "%016x" % h,
      "hash at depth %d equals the float64 reference's %d greedy ids after that prompt" % (DEPTH, NGEN))

# The header names the CPU as /proc/cpuinfo does.
cpu = ""
if os.path.exists("/proc/cpuinfo"):
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
check(not cpu or cpu in p.stderr.splitlines()[0], "header names the CPU %r: %r" % (cpu, p.stderr[:200]))

# Bad depths: one error line, exit 2 (usage), before any benchmarking.
for args, why in [(["--decode-after", "-1"], "negative"), (["--decode-after", "x"], "not a number"),
                  (["--decode-after", "2041", "-n", "8"], "past the model's 2048 positions"),
                  (["--decode-after", "0,16", "-b", "2"], "with batches")]:
    p = subprocess.run([LLAMAC, "bench", "-m", MODEL] + args, capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 2 and len(lines) == 1 and lines[0].startswith("llamac: error:") and not p.stdout,
          "%s refused (%s): rc %d, %r" % (" ".join(args), why, p.returncode, p.stderr.strip()))
print("bench: %d failed" % len(failures))
sys.exit(1 if failures else 0)
