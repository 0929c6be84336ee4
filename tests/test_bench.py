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
print("bench: %d failed" % len(failures))
sys.exit(1 if failures else 0)
