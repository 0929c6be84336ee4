#!/usr/bin/python3
"""llamac bench --sweep on stories260K (-b 1,2 -p 8,16 -n 4 --reps 1): every combination is a row of
each format (markdown, CSV, JSON), the tokens' hash of the batch-1 rows equals the hash of the float64
reference's greedy continuation of the same prompt (tests/ref), batch 2's first sequence continues the
same prompt (its hash over both sequences starts from it), and --plot writes a PNG through gnuplot.
No timing is checked.

The sweep's prompts: for input length P, xorshift64 (<<13, >>7, <<17) seeded with 0x9e3779b97f4a7c15 ^ P,
id = state % n_vocab, P ids per sequence, sequence after sequence; each sequence generates the output
length greedily past end of text. The hash is FNV-1a over the generated ids (64-bit, each id xored in
whole), sequence after sequence.
"""
import csv
import io
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from llama_ref import LlamaRef, greedy  # noqa: E402

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared"))
TMP = os.environ.get("LLAMAC_TMP", "/tmp/llamac-test")
os.makedirs(TMP, exist_ok=True)
MODEL = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
VOCAB, NGEN = 512, 4
BATCHES, PROMPTS = [1, 2], [8, 16]
SWEEP = ["bench", "-m", MODEL, "--sweep", "-b", "1,2", "-p", "8,16", "-n", str(NGEN), "--reps", "1", "-t", "1"]
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def run(args, timeout=600):
    return subprocess.run([LLAMAC] + args, capture_output=True, text=True, timeout=timeout)


def prompts(p, n_seqs):
    rng, out = 0x9e3779b97f4a7c15 ^ p, []
    for _ in range(n_seqs):
        ids = []
        for _ in range(p):
            rng ^= (rng << 13) % (1 << 64)
            rng ^= rng >> 7
            rng ^= (rng << 17) % (1 << 64)
            ids.append(rng % VOCAB)
        out.append(ids)
    return out


def fnv(seqs):
    h = 1469598103934665603
    for s in seqs:
        for i in s:
            h = ((h ^ i) * 1099511628211) % (1 << 64)
    return "%016x" % h


ref = LlamaRef(MODEL)
expected = {}
for p in PROMPTS:
    conts = [greedy(ref, ids, p + NGEN)[p:] for ids in prompts(p, max(BATCHES))]
    for b in BATCHES:
        expected[(b, p)] = fnv(conts[:b])

combos = {(b, p, NGEN) for b in BATCHES for p in PROMPTS}

# JSON
r = run(SWEEP + ["--json"])
check(r.returncode == 0, "--sweep --json exits 0 (%s)" % r.stderr.strip()[-300:])
rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
check({(x["batch"], x["input_tokens"], x["output_tokens"]) for x in rows} == combos and len(rows) == len(combos),
      "JSON: one row per combination of -b x -p x -n: %s" % [(x.get("batch"), x.get("input_tokens")) for x in rows])
for x in rows:
    key = (x["batch"], x["input_tokens"])
    check(x["tok_s"] > 0 and x["peak_rss_mb"] > 0 and isinstance(x["peak_reset"], bool),
          "b=%d p=%d: positive tok/s and peak memory, peak_reset given" % key)
    check(x["hash"] == expected[key], "b=%d p=%d: hash %s == the float64 reference's greedy ids %s" % (key + (x["hash"], expected[key])))

# CSV and markdown: the same rows and hashes
r = run(SWEEP + ["--csv"])
check(r.returncode == 0, "--sweep --csv exits 0")
table = list(csv.DictReader(io.StringIO(r.stdout)))
check({(int(x["batch"]), int(x["input_tokens"]), int(x["output_tokens"])) for x in table} == combos and len(table) == len(combos),
      "CSV: one row per combination, header %s" % (list(table[0].keys()) if table else None))
check(all(x["hash"] == expected[(int(x["batch"]), int(x["input_tokens"]))] for x in table), "CSV: the same hashes")
check(all(float(x["tok_s"]) > 0 and float(x["peak_rss_mb"]) > 0 for x in table), "CSV: numbers parse")

plot = os.path.join(TMP, "sweep.png")
if os.path.exists(plot):
    os.remove(plot)
have_gnuplot = shutil.which("gnuplot") is not None
r = run(SWEEP + (["--plot", plot] if have_gnuplot else []))
check(r.returncode == 0, "--sweep (markdown) exits 0 (%s)" % r.stderr.strip()[-300:])
lines = [line for line in r.stdout.splitlines() if line.startswith("|")]
check(lines and [c.strip() for c in lines[0].strip("|").split("|")][:4] == ["batch", "input tokens", "output tokens", "throughput tok/s"],
      "markdown header: %r" % (lines[0] if lines else None))
body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
check({(int(c[0]), int(c[1]), int(c[2])) for c in body} == combos and len(body) == len(combos), "markdown: one row per combination")
check(all(c[5] == expected[(int(c[0]), int(c[1]))] for c in body), "markdown: the same hashes")
if have_gnuplot:
    png = open(plot, "rb").read() if os.path.exists(plot) else b""
    check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000, "--plot wrote a PNG (%d bytes)" % len(png))
else:
    print("skip --plot: gnuplot is not installed (scripts/install-deps.sh installs gnuplot-nox)")

# without gnuplot on the PATH: one error line before any work, nothing written
if have_gnuplot:
    os.remove(plot)
r = subprocess.run([os.path.abspath(LLAMAC)] + SWEEP + ["--plot", plot], capture_output=True, text=True, timeout=120,
                   env=dict(os.environ, PATH="/nonexistent"))
lines = r.stderr.strip().splitlines()
check(r.returncode == 1 and len(lines) == 1 and "gnuplot" in lines[0] and lines[0].startswith("llamac: error:") and not r.stdout
      and not os.path.exists(plot), "--plot without gnuplot: one error line (%r)" % r.stderr.strip())

# --peer: the peer's command runs after each counted repetition of each configuration, its output after the table
r = run(SWEEP + ["--csv", "--peer", "echo peer-ran"])
out = r.stdout.splitlines()
runs = [i for i, line in enumerate(out) if line == "peer-ran"]
last_row = max(i for i, line in enumerate(out) if line.endswith(expected[(2, 16)]))
check(r.returncode == 0 and len(runs) == len(combos) and runs[0] > last_row,
      "--peer ran once per configuration and repetition (%d), printed after the rows" % len(runs))

# usage errors
for args in [["--plot", plot], ["--sweep", "-t", "1,2"], ["--sweep", "--decode-after", "16"]]:
    r = run(["bench", "-m", MODEL] + args)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and lines[0].startswith("llamac: error:"), "%s refused: %r" % (" ".join(args), r.stderr.strip()))

print("bench --sweep: %d failed" % len(failures))
sys.exit(1 if failures else 0)
