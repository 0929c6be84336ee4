#!/usr/bin/python3
"""Perplexity: llamac vs llama.cpp's figure and vs the numpy reference.

  * `llamac perplexity -m stories260K.gguf -f tinystory.txt --ctx 128 --json`:
    last stdout line is a JSON object with ppl and chunks; ppl within 0.1% of
    shared/testdata/golden/perplexity.json (llama.cpp's llama-perplexity -c 128)
    and the same number of chunks.
  * The float64 reference (tests/ref/llama_ref.py) with llama.cpp's convention
    (tokenize once with BOS via sentencepiece tok512.model, windows of ctx
    tokens, partial last window dropped, first token of each window replaced
    by BOS, positions ctx/2 .. ctx-2 scored on the next token) reproduces the
    golden figure within 0.1% — this validates the convention independently
    of llamac.
  * llamac vs the reference: |ln ppl_ours - ln ppl_ref| <= 2 * 1e-5 * max|logit|
    (each scored -log p moves by at most 2 max_j |dz_j| when the logits move by
    dz, and the f32 forward pass is within 1e-5 * max|z|, see
    test_forward_reference.py), plus the rounding of the printed figure.
"""

import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from llama_ref import LlamaRef, perplexity  # noqa: E402

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared"))
CTX = 128

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def decimals(raw_line, key):
    """Digits after the decimal point of a number as printed in the JSON text."""
    i = raw_line.find('"%s"' % key)
    if i < 0:
        return 6
    j = raw_line.find(":", i) + 1
    num = ""
    for ch in raw_line[j:].lstrip():
        if ch in "0123456789.-+eE":
            num += ch
        else:
            break
    if "e" in num.lower() or "." not in num:
        return 6
    return len(num.split(".")[1])


def main():
    t0 = time.time()
    golden = json.load(open(os.path.join(SHARED, "testdata", "golden", "perplexity.json")))
    gppl, gchunks = float(golden["ppl"]), int(golden["chunks"])
    assert int(golden["ctx"]) == CTX
    model = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
    text_path = os.path.join(SHARED, "testdata", "text", "tinystory.txt")

    # --- the reference: validates the convention against llama.cpp's figure
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(SHARED, "models", "stories260K",
                                                            "tok512.model"))
    with open(text_path, encoding="utf-8") as f:
        tokens = [1] + sp.encode(f.read())
    ref = LlamaRef(model)
    rppl, rchunks, running = perplexity(ref, tokens, CTX, 1)
    rdev = abs(rppl - gppl) / gppl
    print("reference: %d tokens, %d chunks, ppl %.6f (golden %.4f, %.4f%%)"
          % (len(tokens), rchunks, rppl, gppl, 100 * rdev))
    if rchunks != gchunks:
        fail("reference: %d chunks, golden %d" % (rchunks, gchunks))
    if rdev >= 1e-3:
        fail("reference ppl %.6f deviates %.3f%% from golden %.4f (convention wrong?)"
             % (rppl, 100 * rdev, gppl))
    # largest |logit| over the scored windows, for the f32 bound
    maxz = 0.0
    for c in range(rchunks):
        win = list(tokens[c * CTX:(c + 1) * CTX])
        win[0] = 1
        maxz = max(maxz, float(np.max(np.abs(ref.forward(win, last_only=False)[CTX // 2:]))))

    # --- llamac
    try:
        p = subprocess.run([LLAMAC, "perplexity", "-m", model, "-f", text_path, "--ctx", str(CTX),
                            "--json"], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("exit %d: %s" % (p.returncode, p.stderr.strip()[-400:]))
        last = p.stdout.strip().splitlines()[-1]
        o = json.loads(last)
        ppl, chunks = float(o["ppl"]), int(o["chunks"])
    except Exception as e:  # noqa: BLE001
        fail("llamac perplexity: %s" % e)
        print("FAILED: %d failure(s)" % len(failures))
        return 1
    dev = abs(ppl - gppl) / gppl
    print("llamac:    ppl %s, %d chunks (golden %.4f, %d chunks; %.4f%%)"
          % (o["ppl"], chunks, gppl, gchunks, 100 * dev))
    if chunks != gchunks:
        fail("llamac: %d chunks, golden %d" % (chunks, gchunks))
    if dev >= 1e-3:
        fail("llamac ppl %.6f deviates %.3f%% from golden %.4f (bound 0.1%%)" % (ppl, 100 * dev, gppl))
    # llamac vs reference
    bound = 2 * 1e-5 * maxz + 0.5 * 10 ** -decimals(last, "ppl") / ppl
    d = abs(math.log(ppl) - math.log(rppl))
    print("llamac vs reference: |d ln ppl| = %.2e (bound %.2e = 2e-5 * max|z| %.1f + print rounding)"
          % (d, bound, maxz))
    if d > bound:
        fail("llamac ppl %.6f vs reference %.6f: |d ln ppl| %.3e > %.3e" % (ppl, rppl, d, bound))
    print("%s: %d failure(s), %.1f s" % ("FAILED" if failures else "OK", len(failures),
                                         time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
