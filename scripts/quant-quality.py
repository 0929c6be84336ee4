#!/usr/bin/python3
"""Quality of each quantization type against f32, as a markdown table (for BENCHMARKS.md).

    python3 scripts/quant-quality.py [--llamac build/llamac] [--shared ../shared] [--tmp DIR] [--positions N]

For two f32 models, stories260K.gguf (real trained weights; its rows of 64 and 172 values are too short for
the k-quants, so they fall back to q4_0 / q8_0 / f16) and a synthetic `synth --preset tiny-256` (every row a
multiple of 256, so real Q4_K / Q6_K; stories260K's 512-token vocabulary), each type is made with
`llamac quantize` from the f32 file and measured:

  * file size and bits per weight (all tensor bytes x 8 / all weights, as `llamac info` prints it);
  * perplexity (`llamac perplexity --ctx 128`): stories260K on ../shared/testdata/text/tinystory.txt, the
    synthetic model on its own f32 greedy continuation (~500 tokens) of a prompt;
  * next-token logits against the f32 model's at N positions (prefixes of tinystory.txt's tokens, spread
    over the first 256): RMS and max |difference| over all positions and vocabulary entries (with the RMS
    of the f32 logits for scale), and how often the top-1 token is the same.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ["f32", "f16", "bf16", "q8_0", "q6_k", "q4_k_m", "q4_k_s", "q4_k", "q4_0"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llamac", default=os.path.join(ROOT, "build", "llamac"))
    ap.add_argument("--shared", default=os.environ.get("LLAMAC_SHARED", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--tmp", default="/tmp/llamac-quant-quality")
    ap.add_argument("--positions", type=int, default=48)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(args.tmp, exist_ok=True)
    env = dict(os.environ, LLAMAC_SHARED=args.shared)

    def llamac(*a):
        p = subprocess.run([args.llamac, *a], capture_output=True, text=True, env=env, timeout=3600)
        if p.returncode != 0:
            sys.exit("quant-quality: llamac %s: %s" % (" ".join(a), p.stderr.strip()[-500:]))
        return p

    stories_dir = os.path.join(args.shared, "models", "stories260K")
    text = os.path.join(args.shared, "testdata", "text", "tinystory.txt")
    synth = os.path.join(args.tmp, "tiny256-f32.gguf")
    llamac("synth", "--preset", "tiny-256", "--vocab", os.path.join(stories_dir, "tok512.model"), "--seed", "1", "-o", synth)
    greedy = os.path.join(args.tmp, "tiny256-greedy.txt")
    prompt = "Once upon a time, there was a little girl named Lily."
    o = json.loads(llamac("generate", "-m", synth, "-p", prompt, "-n", "500", "--temp", "0", "--json").stdout)
    with open(greedy, "w", encoding="utf-8") as f:
        f.write(prompt + o["text"])

    models = [("stories260K", os.path.join(stories_dir, "stories260K.gguf"), text, "tinystory.txt"),
              ("synthetic tiny-256", synth, greedy, "own greedy text")]
    out = []
    for label, src, ppl_text, ppl_what in models:
        ids = json.loads(llamac("tokenize", "-m", src, "--json", "--file", text).stdout)
        n = min(len(ids), 256)
        positions = sorted(set(int(round(x)) for x in np.linspace(2, n, args.positions)))
        files = {}
        for t in TYPES:
            path = os.path.join(args.tmp, "%s-%s.gguf" % (label.split()[-1], t))
            llamac("quantize", src, path, t)
            files[t] = path

        def logits(path, k):
            return np.asarray(json.loads(llamac("logits", "-m", path, "--threads", "1", "--ids", ",".join(map(str, ids[:k]))).stdout)["logits"])

        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
            futs = {(t, k): ex.submit(logits, files[t], k) for t in TYPES for k in positions}
            z = {key: f.result() for key, f in futs.items()}
        base = np.stack([z[("f32", k)] for k in positions])
        rows = []
        for t in TYPES:
            size = os.path.getsize(files[t])
            bpw = float(re.search(r"([\d.]+) bits per weight overall", llamac("info", files[t]).stdout).group(1))
            ppl = json.loads(llamac("perplexity", "-m", files[t], "-f", ppl_text, "--ctx", "128", "--json").stdout.strip().splitlines()[-1])["ppl"]
            zt = np.stack([z[(t, k)] for k in positions])
            d = zt - base
            top1 = float(np.mean(np.argmax(zt, axis=1) == np.argmax(base, axis=1)))
            rows.append((t, size, bpw, ppl, float(np.sqrt(np.mean(d ** 2))), float(np.max(np.abs(d))), top1))
        out.append((label, ppl_what, len(positions), float(np.sqrt(np.mean(base ** 2))), rows))

    for label, ppl_what, npos, zrms, rows in out:
        print("\n**%s** (perplexity on %s, ctx 128; logits at %d positions of tinystory.txt, RMS of the f32 logits %.2f)\n"
              % (label, ppl_what, npos, zrms))
        print("| type | file | bits/weight | perplexity | logit RMS err | logit max err | top-1 agree |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for t, size, bpw, ppl, rms, mx, top1 in rows:
            size_s = "%.1f KiB" % (size / 1024) if size < 1 << 20 else "%.2f MiB" % (size / 1048576)
            print("| %s | %s | %.2f | %.6g | %.4f | %.4f | %.1f%% |" % (t, size_s, bpw, ppl, rms, mx, 100 * top1))


if __name__ == "__main__":
    main()
