#!/usr/bin/python3
"""llamac quantize (and convert --type / synth --type with the same rule): the tensor types chosen, the
weights, the perplexity, and bad input.

The type rule below is written here from llama.cpp's llama-quantize (llama_tensor_get_type in
src/llama-quant.cpp), not from llamac's code; every output GGUF is read with the independent numpy reader
(tests/ref/gguf_reader.py):

  * plain types (f32 f16 bf16 q8_0 q4_0 q4_k q6_k): every matrix in that type;
  * q4_k_m: Q4_K, except the output projection (output.weight, or token_embd.weight when tied, because it
    is the output too) Q6_K, and attn_v / ffn_down of the layers i with use_more_bits(i, n) Q6_K, where
    use_more_bits(i, n) = i < n/8 or i >= 7n/8 or (i - n/8) % 3 == 2;
  * q4_k_s: Q4_K, the output Q6_K, attn_v of layers 0-3 and ffn_down of layers < n/8 Q5_K in llama.cpp,
    Q6_K in llamac (it has no Q5_K);
  * the output projection of a mix is Q8_0 when its row length is not a multiple of 256 (llama.cpp);
  * fallbacks when the row length is not a multiple of the type's block: Q4_K -> Q4_0 (llama.cpp: Q5_0),
    Q6_K -> Q8_0, and rows that are not a multiple of 32 -> F16; 1-D tensors are F32.

Models: stories260K.gguf (real weights; rows of 64 and 172, so only fallbacks), a synthetic `tiny-256`
(every row a multiple of 256: real Q4_K/Q6_K; the 512-token vocabulary of stories260K keeps it small) with 2
and 16 layers, stories260K.bin (llama2.c) and a Hugging Face folder as inputs, and requantized inputs.

Weights: every tensor of the output against the source, dequantized, per element, relative to the largest
|x| of the type's block in that row (amax):
  f32 exact; f16 2^-11 |x| (+2^-25 for subnormals); bf16 2^-8 |x|;
  q8_0  amax (1/254 + 2^-11): half a step of amax/127, plus the fp16 rounding of the scale (127 steps);
  q4_0  amax/8 (1 + 2^-8):    a step is amax/8 and the largest value of one sign is clamped a whole step;
  q6_k  0.04 amax, RMS <= 0.025 RMS(x);  q4_k  0.2 amax, RMS <= 0.08 RMS(x): 6-bit and 4-bit grids whose
        scales (and q4_k's minimums) are themselves quantized and fitted by a search that may clip; the
        bounds are about twice what uniform weights measure (q6_k 0.023 / 0.013, q4_k 0.11 / 0.055).
Tensors whose type equals the source's are copied: their bytes must be identical.

Perplexity (llamac perplexity, llama.cpp's convention): finite, and |ln ppl - ln ppl(f32)| <= 0.01 for
q8_0 and <= 0.15 for q4_k_m on stories260K with tinystory.txt (measured 0.002 and 0.057), and on the synthetic
model with its own greedy text.
"""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
import gguf_reader  # noqa: E402
from gguf_reader import GGUFFile  # noqa: E402

# ggml's k-quant block sizes (elements, bytes), so raw bytes and sizes can be read even by a reader that
# does not dequantize them (the weight checks need its dequantization)
for _t, _b in {12: (256, 144), 14: (256, 210)}.items():
    gguf_reader._BLOCK.setdefault(_t, _b)

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared"))
TMP = os.path.join(os.environ.get("LLAMAC_TMP", "/tmp/llamac-test"), "quantize")
os.makedirs(TMP, exist_ok=True)
STORIES = os.path.join(SHARED, "models", "stories260K")
TEXT = os.path.join(SHARED, "testdata", "text", "tinystory.txt")

PLAIN = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"]
MIXES = ["q4_k_m", "q4_k_s"]
FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_k": 15, "q6_k": 18, "q4_k_m": 15, "q4_k_s": 14}
BLOCK = {"q8_0": 32, "q4_0": 32, "q4_k": 256, "q6_k": 256}
GGML = {0: "f32", 1: "f16", 2: "q4_0", 8: "q8_0", 12: "q4_k", 14: "q6_k", 30: "bf16"}

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def run(*args, ok=True, env=None):
    p = subprocess.run([LLAMAC, *args], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, LLAMAC_SHARED=SHARED, **(env or {})))
    if ok and p.returncode != 0:
        raise SystemExit("FAIL: llamac %s: %s" % (" ".join(args), p.stderr.strip()))
    return p


# ---- the rule, from llama.cpp's llama-quantize ---------------------------------------------------------

def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def expected_type(mix, name, shape, n_layers, tied):
    """shape: ggml order (shape[0] = row length)."""
    if len(shape) == 1 or shape[1] == 1:
        return "f32"
    cols = shape[0]
    t = "q4_k" if mix in MIXES else mix
    if mix in MIXES:
        m = re.match(r"blk\.(\d+)\.", name)
        layer = int(m.group(1)) if m else None
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            t = "q6_k" if cols % 256 == 0 else "q8_0"
        elif name.endswith("attn_v.weight"):
            if (mix == "q4_k_m" and use_more_bits(layer, n_layers)) or (mix == "q4_k_s" and layer < 4):
                t = "q6_k"
        elif name.endswith("ffn_down.weight"):
            if (mix == "q4_k_m" and use_more_bits(layer, n_layers)) or (mix == "q4_k_s" and layer < n_layers // 8):
                t = "q6_k"
    if cols % BLOCK.get(t, 1):
        t = {"q4_k": "q4_0", "q6_k": "q8_0"}.get(t, t)
        if cols % BLOCK.get(t, 1):
            t = "f16"
    return t


# ---- weights --------------------------------------------------------------------------------------------

def weight_error(t, a, b):
    """(ok, detail) for tensor b (type t) against source values a, both float64 [rows, cols]."""
    e = np.abs(b - a)
    if t == "f32":
        return bool(np.all(e == 0)), "max|e| %.3g (exact)" % e.max()
    if t == "f16":
        r = float(np.max(e - (2.0 ** -11 * np.abs(a) + 2.0 ** -25)))
        return r <= 0, "max|e| %.3g" % e.max()
    if t == "bf16":
        r = float(np.max(e - (2.0 ** -8 * np.abs(a) + 1e-38)))
        return r <= 0, "max|e| %.3g" % e.max()
    bs = BLOCK[t]
    amax = np.repeat(np.abs(a).reshape(-1, bs).max(axis=1), bs).reshape(a.shape)
    rel = float(np.max(e / np.where(amax > 0, amax, 1)))
    rms = float(np.sqrt(np.mean(e ** 2) / max(np.mean(a ** 2), 1e-300)))
    bound, rms_bound = {"q8_0": ((1 / 254 + 2.0 ** -11) * 1.0001, 1), "q4_0": (1 / 8 * (1 + 2.0 ** -8), 1),
                        "q6_k": (0.04, 0.025), "q4_k": (0.2, 0.08)}[t]
    return rel <= bound and rms <= rms_bound, "max|e|/amax %.4f (bound %.4f), rms %.4f" % (rel, bound, rms)


def check_file(what, out, src_path, mix, n_layers, tied, copied_types=()):
    """Types against the rule, file type, and every tensor against the source's values."""
    try:
        g = GGUFFile(out)
        s = GGUFFile(src_path)
    except gguf_reader.GGUFError as e:
        check(False, "%s: tests/ref/gguf_reader.py cannot read the files (q4_k/q6_k dequantization missing?): %s" % (what, e))
        return None
    check(sorted(g.tensors) == sorted(s.tensors), "%s: the same %d tensor names as the source" % (what, len(s.tensors)))
    wrong, bad, counts = [], [], {}
    for name, ti in g.tensors.items():
        got = GGML.get(ti.type, str(ti.type))
        counts[got] = counts.get(got, 0) + 1
        want = expected_type(mix, name, ti.shape, n_layers, tied)
        if got != want:
            wrong.append("%s %s: %s, rule %s" % (name, ti.shape, got, want))
            continue
        if name not in s.tensors:
            continue
        if s.tensors[name].type == ti.type:
            if not np.array_equal(g.raw(name), s.raw(name)):
                bad.append("%s: %s in both but the bytes differ" % (name, got))
            continue
        try:
            a, b = s.tensor(name), g.tensor(name)
        except gguf_reader.GGUFError as e:
            bad.append("%s (%s): tests/ref/gguf_reader.py cannot dequantize it: %s" % (name, got, e))
            continue
        ok, detail = weight_error(got, a.reshape(a.shape[0], -1) if a.ndim > 1 else a[None, :],
                                  b.reshape(b.shape[0], -1) if b.ndim > 1 else b[None, :])
        if not ok:
            bad.append("%s (%s): %s" % (name, got, detail))
    check(not wrong, "%s: every tensor's type follows the rule (%s)%s" % (
        what, ", ".join("%s: %d" % kv for kv in sorted(counts.items())), "; " + "; ".join(wrong[:4]) if wrong else ""))
    check(not bad, "%s: every tensor within its type's bound of the source%s" % (what, "; " + "; ".join(bad[:4]) if bad else ""))
    ft = g.metadata.get("general.file_type")
    check(ft == FILE_TYPE[mix], "%s: general.file_type %s (want %d)" % (what, ft, FILE_TYPE[mix]))
    return g


def quantize(src, name, t, *extra):
    out = os.path.join(TMP, name)
    p = run("quantize", src, out, t, *extra)
    return out, p.stderr


def summary_counts(stderr):
    m = re.search(r"tensor types: (.*)", stderr)
    if not m:
        return None
    return {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", m.group(1))}


def perplexity(model, text, ctx):
    p = run("perplexity", "-m", model, "-f", text, "--ctx", str(ctx), "--json", ok=False)
    if p.returncode != 0:
        return float("nan"), p.stderr.strip()
    return float(json.loads(p.stdout.strip().splitlines()[-1])["ppl"]), ""


def main():
    tok512 = os.path.join(STORIES, "tok512.model")
    stories = os.path.join(STORIES, "stories260K.gguf")
    tiny = os.path.join(TMP, "tiny256-f32.gguf")
    run("synth", "--preset", "tiny-256", "--vocab", tok512, "--seed", "3", "-o", tiny)
    tiny16 = os.path.join(TMP, "tiny256-16l-f32.gguf")
    run("synth", "--preset", "tiny-256", "--vocab", tok512, "--seed", "4", "--layers", "16", "-o", tiny16)

    # ---- every type and mix, on real weights (fallbacks only) and on 256-multiple rows -----------------
    outs = {}
    for label, src, n_layers, tied in [("stories260K", stories, 5, False), ("tiny-256", tiny, 2, True)]:
        for t in PLAIN + MIXES:
            out, err = quantize(src, "%s-%s.gguf" % (label, t), t.upper() if t == "q4_k_m" else t)
            g = check_file("%s -> %s" % (label, t), out, src, t, n_layers, tied)
            outs[(label, t)] = out
            if g is not None:
                want = {}
                for ti in g.tensors.values():
                    want[GGML.get(ti.type)] = want.get(GGML.get(ti.type), 0) + 1
                check(summary_counts(err) == want, "%s -> %s: the summary's tensor counts %s" % (label, t, summary_counts(err)))
    for t in MIXES:
        out, _ = quantize(tiny16, "tiny256-16l-%s.gguf" % t, t)
        check_file("tiny-256 16 layers -> %s" % t, out, tiny16, t, 16, True)

    # ---- inputs: requantized, copied, other formats ------------------------------------------------------
    out, _ = quantize(outs[("stories260K", "q8_0")], "stories-q8_0-q4_k_m.gguf", "q4_k_m")
    check_file("stories260K q8_0 -> q4_k_m (requantized)", out, outs[("stories260K", "q8_0")], "q4_k_m", 5, False)
    out, _ = quantize(outs[("tiny-256", "q4_k_m")], "tiny256-q4_k_m-q8_0.gguf", "q8_0")
    check_file("tiny-256 q4_k_m -> q8_0 (requantized)", out, outs[("tiny-256", "q4_k_m")], "q8_0", 2, True)
    out, _ = quantize(outs[("tiny-256", "q4_k_m")], "tiny256-q4_k_m-again.gguf", "q4_k_m")
    g = check_file("tiny-256 q4_k_m -> q4_k_m (copied)", out, outs[("tiny-256", "q4_k_m")], "q4_k_m", 2, True)
    out, _ = quantize(os.path.join(STORIES, "stories260K.bin"), "stories-bin-q4_k_m.gguf", "q4_k_m",
                      "--tokenizer", os.path.join(STORIES, "tok512.bin"))
    ref_from_gguf = outs[("stories260K", "q4_k_m")]
    g1, g2 = GGUFFile(out), GGUFFile(ref_from_gguf)
    # the llama2.c checkpoint shares the classifier with the embedding: its token_embd is the output (Q8_0)
    check(GGML.get(g1.tensors["token_embd.weight"].type) == "q8_0" and "output.weight" not in g1.tensors,
          "stories260K.bin (tied) -> q4_k_m: token_embd takes the output's type (q8_0 for rows of 64)")
    same = [n for n in g1.tensors if n != "token_embd.weight" and np.array_equal(g1.raw(n), g2.raw(n))]
    check(len(same) == len(g1.tensors) - 1, "stories260K.bin -> q4_k_m: %d of %d other tensors byte-identical to the GGUF's"
          % (len(same), len(g1.tensors) - 1))
    hf = os.path.join(TMP, "tiny256-hf")
    run("synth", "--preset", "tiny-256", "--vocab", tok512, "--seed", "3", "--format", "hf", "--type", "bf16", "-o", hf)
    tiny_bf16 = os.path.join(TMP, "tiny256-bf16.gguf")
    run("synth", "--preset", "tiny-256", "--vocab", tok512, "--seed", "3", "--type", "bf16", "-o", tiny_bf16)
    a, _ = quantize(hf, "tiny256-hf-q4_k_m.gguf", "q4_k_m")
    b, _ = quantize(tiny_bf16, "tiny256-bf16-q4_k_m.gguf", "q4_k_m")
    ga, gb = GGUFFile(a), GGUFFile(b)
    same = [n for n in gb.tensors if n in ga.tensors and np.array_equal(ga.raw(n), gb.raw(n))]
    check(len(same) == len(gb.tensors), "Hugging Face folder -> q4_k_m: all %d tensors byte-identical to the GGUF's of the same "
          "weights (%d)" % (len(gb.tensors), len(same)))

    # ---- one rule for quantize, convert --type and synth --type; threads do not change the bytes ----------
    direct = os.path.join(TMP, "tiny256-synth-q4_k_m.gguf")
    run("synth", "--preset", "tiny-256", "--vocab", tok512, "--seed", "3", "--type", "q4_k_m", "-o", direct)
    gq, gs = GGUFFile(outs[("tiny-256", "q4_k_m")]), GGUFFile(direct)
    same = [n for n in gq.tensors if n in gs.tensors and np.array_equal(gq.raw(n), gs.raw(n))]
    check(len(same) == len(gq.tensors) and gs.metadata.get("general.file_type") == 15,
          "synth --type q4_k_m: the tensors quantize writes from synth's f32 (%d of %d identical)" % (len(same), len(gq.tensors)))
    conv = os.path.join(TMP, "stories-convert-q4_k_m.gguf")
    run("convert", stories, conv, "--type", "q4_k_m")
    with open(conv, "rb") as f1, open(outs[("stories260K", "q4_k_m")], "rb") as f2:
        check(f1.read() == f2.read(), "convert --type q4_k_m writes the file quantize writes")
    t1, _ = quantize(tiny, "tiny256-q4_k_m-t1.gguf", "q4_k_m", "--threads", "1")
    t3, _ = quantize(tiny, "tiny256-q4_k_m-t3.gguf", "q4_k_m", "--threads", "3")
    with open(t1, "rb") as f1, open(t3, "rb") as f2:
        check(f1.read() == f2.read(), "--threads 1 and --threads 3 write the same bytes")

    # ---- info shows the mix --------------------------------------------------------------------------------
    for label, t in [("tiny-256", "q4_k_m"), ("stories260K", "q4_k_s"), ("tiny-256", "f32")]:
        path = outs[(label, t)]
        text = run("info", path).stdout
        g = GGUFFile(path)
        want = {}
        nbytes = nel = 0
        for ti in g.tensors.values():
            k = GGML.get(ti.type)
            c, by, el = want.get(k, (0, 0, 0))
            want[k] = (c + 1, by + ti.nbytes, el + ti.n_elements)
            nbytes += ti.nbytes
            nel += ti.n_elements
        rows = {m.group(1): (int(m.group(2)), float(m.group(3))) for m in
                re.finditer(r"^\s+(\w+)\s+(\d+) tensors?\s+([\d.]+) MiB", text, re.M)}
        ok_rows = set(rows) == set(want) and all(rows[k][0] == want[k][0] and abs(rows[k][1] - want[k][1] / 1048576) < 0.006
                                                for k in want)
        m = re.search(r"([\d.]+) bits per weight overall", text)
        ok_bpw = m is not None and abs(float(m.group(1)) - 8.0 * nbytes / nel) < 0.006
        names = {0: "all F32", 14: "Q4_K - Small", 15: "Q4_K - Medium"}
        ok_ft = ("file type:      %s (general.file_type %d)" % (names[FILE_TYPE[t]], FILE_TYPE[t])) in text
        check(ok_rows and ok_bpw and ok_ft, "info %s %s: file type, a line per type (count, MiB) and %.2f bits per weight%s" % (
            label, t, 8.0 * nbytes / nel, "" if ok_rows and ok_bpw and ok_ft else ":\n" + text))

    # ---- perplexity ------------------------------------------------------------------------------------------
    greedy_txt = os.path.join(TMP, "tiny256-greedy.txt")
    o = json.loads(run("generate", "-m", tiny, "-p", "Once upon a time, there was a little girl named Lily.", "-n", "500",
                       "--temp", "0", "--json").stdout)
    with open(greedy_txt, "w", encoding="utf-8") as f:
        f.write("Once upon a time, there was a little girl named Lily." + o["text"])
    for label, text, ctx in [("stories260K", TEXT, 128), ("tiny-256", greedy_txt, 128)]:
        base, err = perplexity(outs[(label, "f32")], text, ctx)
        check(math.isfinite(base), "%s f32: perplexity %s %s" % (label, base, err))
        for t, bound in [("q8_0", 0.01), ("q4_k_m", 0.15)]:
            ppl, err = perplexity(outs[(label, t)], text, ctx)
            d = abs(math.log(ppl) - math.log(base)) if math.isfinite(ppl) and math.isfinite(base) else float("inf")
            check(d <= bound, "%s %s: perplexity %.4f vs f32 %.4f on %s: |d ln ppl| %.4f <= %g %s" % (
                label, t, ppl, base, os.path.basename(text), d, bound, err))

    # ---- bad input: one line, non-zero status, no file left behind ---------------------------------------------
    def bad(args, what, code=None):
        out = args[1] if len(args) > 1 else None
        p = run("quantize", *args, ok=False)
        lines = p.stderr.strip().splitlines()
        left = [f for f in ([out, out + ".tmp"] if out else []) if os.path.exists(f)]
        check(p.returncode != 0 and (code is None or p.returncode == code) and len(lines) == 1 and
              lines[0].startswith("llamac: error:") and not left,
              "%s: exit %d, %r%s" % (what, p.returncode, p.stderr.strip(), ", left %s" % left if left else ""))

    bad([stories, os.path.join(TMP, "bad-type.gguf"), "q5_k"], "unknown type q5_k", 2)
    bad([stories, os.path.join(TMP, "bad-type.gguf"), "Q4_K_X"], "unknown type Q4_K_X", 2)
    bad([os.path.join(TMP, "missing.gguf"), os.path.join(TMP, "bad-missing.gguf"), "q8_0"], "missing input", 1)
    bad([stories, os.path.join(TMP, "no-such-dir", "out.gguf"), "q8_0"], "output in a missing directory", 1)
    truncated = os.path.join(TMP, "truncated.gguf")
    with open(stories, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:5000])
    bad([truncated, os.path.join(TMP, "bad-truncated.gguf"), "q8_0"], "truncated input", 1)
    os.makedirs(os.path.join(TMP, "a-directory"), exist_ok=True)
    p = run("quantize", stories, os.path.join(TMP, "a-directory"), "q8_0", ok=False)
    check(p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and not os.path.exists(os.path.join(TMP, "a-directory.tmp")),
          "output is a directory: exit %d, %r, no .tmp left" % (p.returncode, p.stderr.strip()))
    bad([stories], "missing arguments", 2)
    for cmd in (["convert", stories, os.path.join(TMP, "bad-conv.gguf"), "--type", "q5_k"],
                ["synth", "--preset", "tiny-256", "--type", "q5_k", "-o", os.path.join(TMP, "bad-synth.gguf")]):
        p = run(*cmd, ok=False)
        check(p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, "%s --type q5_k: exit %d, %r" % (
            cmd[0], p.returncode, p.stderr.strip()))


main()
print("quantize: %d failed" % len(failures))
sys.exit(1 if failures else 0)
