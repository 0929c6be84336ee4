#!/usr/bin/python3
"""llamac estimate-memory against independent figures.

1. Bytes by hand: the GGUF header parsed in Python (tests/ref/gguf_reader.py, written from the spec),
   each tensor's bytes from ggml's block sizes (F32 4, F16/BF16 2, Q8_0 34 per 32, Q4_0 18 per 32,
   Q4_K 144 per 256, Q6_K 210 per 256), as stored and as re-typed by quantize's rule (every matrix of
   the type; Q4_K -> Q4_0 where 256 does not divide the row, F16 where 32 does not; vectors F32), and
   the KV cache as 2 x layers x positions x kv_dim x bytes per value.
2. Measured: the peak RSS (VmHWM) of `llamac generate` runs against the estimate's total: within 10%
   for models whose weights (and vocabulary) dominate (a synth tiny-256 model, 131 MB of f32 weights,
   and its q8_0 copy, whose weights the kernels repack), within 20% for stories260K, where the
   process's own code is most of it.
3. The other sources: a preset's figures equal those of the file synth writes for it; a header cut
   after the tensor list gives what the whole file gives; bad input is one error line.
"""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from gguf_reader import GGUFFile  # noqa: E402

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared"))
TMP = os.environ.get("LLAMAC_TMP", "/tmp/llamac-test")
os.makedirs(TMP, exist_ok=True)
STORIES = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")

# ggml type id -> (name, values per block, bytes per block)
TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 30: ("bf16", 1, 2), 8: ("q8_0", 32, 34), 2: ("q4_0", 32, 18),
         12: ("q4_k", 256, 144), 14: ("q6_k", 256, 210)}
BY_NAME = {v[0]: v for v in TYPES.values()}
KV_BYTES = {"f32": lambda n: 4 * n, "f16": lambda n: 2 * n, "q8_0": lambda n: n // 32 * 34}

# ASan's shadow memory, redzones and quarantine are not llamac's: the measured comparisons need a plain build
SANITIZED = os.environ.get("LLAMAC_SANITIZE", "") not in ("", "0", "OFF", "off")
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def run(args, timeout=300):
    return subprocess.run([LLAMAC] + args, capture_output=True, text=True, timeout=timeout)


def estimate(src, *args):
    p = run(["estimate-memory", src, "--json"] + list(args))
    check(p.returncode == 0, "estimate-memory %s %s exits 0 (%s)" % (src, " ".join(args), p.stderr.strip()[-200:]))
    return json.loads(p.stdout) if p.returncode == 0 else {}


def tensor_bytes(type_name, n):
    _, block, nbytes = BY_NAME[type_name]
    assert n % block == 0
    return n // block * nbytes


def retype(target, cols, rows):
    if rows == 1:
        return "f32"
    t = target
    if t in ("q4_k",) and cols % 256:
        t = "q4_0"
    if t in ("q6_k",) and cols % 256:
        t = "q8_0"
    if BY_NAME[t][1] == 32 and cols % 32:
        t = "f16"
    return t


def expected_types(g, target=None):
    """{type: (n_tensors, bytes)} from the header, as stored or re-typed to target."""
    out = {}
    for ti in g.tensors.values():
        cols = ti.shape[0]
        n = 1
        for d in ti.shape:
            n *= d
        rows = n // cols
        t = TYPES[ti.type][0] if target is None else retype(target, cols, rows)
        c, b = out.get(t, (0, 0))
        out[t] = (c + 1, b + tensor_bytes(t, n))
    return out


def got_types(est):
    return {t["type"]: (t["n_tensors"], t["bytes"]) for t in est.get("types", [])}


def shape_of(g):
    L = g.get("llama.block_count")
    heads = g.get("llama.attention.head_count")
    kv_heads = g.get("llama.attention.head_count_kv", heads)
    dim = g.get("llama.embedding_length")
    return L, dim // heads * kv_heads


def check_file(path, label, targets):
    g = GGUFFile(path)
    for target in [None] + targets:
        args = [] if target is None else ["--type", target]
        est = estimate(path, *args)
        exp = expected_types(g, target)
        check(got_types(est) == exp, "%s %s: bytes by type %s == hand-computed %s" % (label, target or "as stored", got_types(est), exp))
        if target is None and all(t == "f32" for t in exp):
            # f32 is read in place: the resident weights are the file's, less an untied embedding
            emb = g.tensors["token_embd.weight"]
            emb_bytes = 4 * emb.shape[0] * emb.shape[1] if "output.weight" in g.tensors else 0
            total = sum(b for _, b in exp.values())
            check(est.get("weights_bytes") == total - emb_bytes and est.get("embedding_by_row_bytes") == emb_bytes,
                  "%s: resident f32 weights %s == %d - untied embedding %d" % (label, est.get("weights_bytes"), total, emb_bytes))
    L, kv_dim = shape_of(g)
    for kv in ["f32", "f16", "q8_0"]:
        if kv == "q8_0" and kv_dim % 32:
            continue
        for ctx in [64, 1000]:
            est = estimate(path, "--ctx", str(ctx), "--kv-type", kv)
            want = 2 * L * KV_BYTES[kv](ctx * kv_dim)
            got = est.get("kv_cache_bytes", 0)
            # beyond the values: 4 bytes of token id per position and the block's bookkeeping
            check(want <= got <= want + 8 * ctx + 4096, "%s: KV %s at %d positions %d ~ 2 x %d x %d x %d values = %d" %
                  (label, kv, ctx, got, L, ctx, kv_dim, want))
    g.close()
    return est


def measured_peak(path, ctx):
    p = run(["generate", "-m", path, "-p", "Once upon a time", "-n", "48", "--temp", "0", "-c", str(ctx), "--json"])
    check(p.returncode == 0, "generate on %s exits 0 (%s)" % (path, p.stderr.strip()[-200:]))
    if p.returncode != 0:
        return 0
    return json.loads(p.stdout)["timings"]["peak_rss_mb"] * 1048576


# 1. hand-computed bytes: stories260K (untied, rows of 64 and 172: the fallbacks) and a tiny-256 synth
check_file(STORIES, "stories260K", ["q4_0", "q8_0", "q4_k", "f16", "bf16"])
t256 = os.path.join(TMP, "estimate-tiny256-f32.gguf")
p = run(["synth", "--preset", "tiny-256", "-o", t256])
check(p.returncode == 0, "synth tiny-256 (%s)" % p.stderr.strip()[-200:])
check_file(t256, "tiny-256", ["q4_0", "q4_k", "q6_k"])

# 2. against measured runs
CTX = 256
for path, label, bound in [(t256, "tiny-256 f32", 0.10), (STORIES, "stories260K", 0.20)]:
    est = estimate(path, "--ctx", str(CTX))
    rss = measured_peak(path, CTX)
    total = est.get("total_bytes", 0)
    check(SANITIZED or (rss > 0 and abs(total - rss) <= bound * rss),
          "%s: estimate %.1f MiB within %d%% of the measured peak RSS %.1f MiB%s" %
          (label, total / 1048576, bound * 100, rss / 1048576, " (not compared under sanitizers)" if SANITIZED else ""))
q8 = os.path.join(TMP, "estimate-tiny256-q8_0.gguf")
p = run(["quantize", t256, q8, "q8_0"])
check(p.returncode == 0, "quantize tiny-256 to q8_0 (%s)" % p.stderr.strip()[-200:])
est_as = estimate(t256, "--ctx", str(CTX), "--type", "q8_0")
est = estimate(q8, "--ctx", str(CTX))
check(est_as.get("weights_bytes") == est.get("weights_bytes") and got_types(est_as) == got_types(est),
      "--type q8_0 on the f32 file gives what the quantized file gives: %s, %s" % (est_as.get("weights_bytes"), est.get("weights_bytes")))
rss = measured_peak(q8, CTX)
check(SANITIZED or (rss > 0 and abs(est.get("total_bytes", 0) - rss) <= 0.10 * rss),
      "tiny-256 q8_0 (repacked weights): estimate %.1f MiB within 10%% of the measured peak RSS %.1f MiB%s" %
      (est.get("total_bytes", 0) / 1048576, rss / 1048576, " (not compared under sanitizers)" if SANITIZED else ""))

# 3. other sources
pre = estimate("tiny-256", "--ctx", str(CTX))
fil = estimate(t256, "--ctx", str(CTX))
same = ["weights_bytes", "kv_cache_bytes", "scratch_bytes", "n_params", "types", "n_layers", "dim", "n_vocab"]
check(all(pre.get(k) == fil.get(k) for k in same),
      "preset tiny-256 == the file synth writes for it: %s" % {k: (pre.get(k), fil.get(k)) for k in same if pre.get(k) != fil.get(k)})
check(abs(pre.get("tokenizer_bytes", 0) - fil.get("tokenizer_bytes", 0)) <= 0.05 * fil.get("tokenizer_bytes", 1),
      "preset's tokenizer guess within 5%% of the figure from the file's vocabulary: %s, %s" %
      (pre.get("tokenizer_bytes"), fil.get("tokenizer_bytes")))
big = estimate("llama-3.1-8b", "--type", "q4_0", "--ctx", "8192")
# Llama 3.1 8B: 8030261248 parameters, and the 64 rope_freqs factors its GGUF stores; every matrix in Q4_0
# but 65 norms of 4096 f32 values and rope_freqs
check(big.get("n_params") == 8030261248 + 64, "llama-3.1-8b preset: 8030261248 parameters + 64 rope factors (%s)" % big.get("n_params"))
check(big.get("kv_cache_bytes", 0) >= 2 * 32 * 8192 * 1024 * 4, "llama-3.1-8b: KV at 8192 positions is 1 GiB")
want_q4 = (8030261248 - 65 * 4096) // 32 * 18
check(got_types(big).get("q4_0", (0, 0))[1] == want_q4, "llama-3.1-8b --type q4_0: %s bytes of q4_0 == %d" %
      (got_types(big).get("q4_0"), want_q4))

# a header alone (the file cut after its tensor list, as a ranged fetch would bring it)
g = GGUFFile(t256)
cut = os.path.join(TMP, "estimate-header-only.gguf")
with open(t256, "rb") as f, open(cut, "wb") as o:
    o.write(f.read(g.data_offset))
g.close()
hdr = estimate(cut, "--ctx", str(CTX))
check(all(hdr.get(k) == fil.get(k) for k in same + ["tokenizer_bytes"]), "a GGUF cut after its header gives the whole file's figures")

# a Hugging Face folder (config.json, dtype from model.safetensors) and llama2.c
hf = os.path.join(TMP, "estimate-hf")
p = run(["synth", "--preset", "tiny-llama2", "--format", "hf", "--type", "bf16", "-o", hf])
check(p.returncode == 0, "synth --format hf (%s)" % p.stderr.strip()[-200:])
hfe = estimate(hf, "--ctx", str(CTX))
L, dim, ffn, V, kvd = 2, 128, 352, 32000, 128
mat = L * (2 * dim * dim + 2 * kvd * dim + 3 * ffn * dim) + 2 * V * dim
check(got_types(hfe).get("bf16", (0, 0))[1] == 2 * mat, "HF folder: bf16 matrices from the safetensors header, %s == %d bytes" %
      (got_types(hfe).get("bf16"), 2 * mat))
cfg = estimate(os.path.join(hf, "config.json"), "--ctx", str(CTX))
check(cfg.get("weights_bytes") == hfe.get("weights_bytes"), "config.json beside its weights == the folder")
# the weights' header decides over config.json's torch_dtype (set to float32 here), also through a shard index
conf = json.load(open(os.path.join(hf, "config.json")))
conf["torch_dtype"] = "float32"
for sharded in (False, True):
    d = os.path.join(TMP, "estimate-hf-%s" % ("sharded" if sharded else "single"))
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    json.dump(conf, open(os.path.join(d, "config.json"), "w"))
    shard = "model-00001-of-00001.safetensors" if sharded else "model.safetensors"
    os.symlink(os.path.abspath(os.path.join(hf, "model.safetensors")), os.path.join(d, shard))
    if sharded:
        json.dump({"weight_map": {"model.layers.0.self_attn.q_proj.weight": shard}},
                  open(os.path.join(d, "model.safetensors.index.json"), "w"))
    e = estimate(d, "--ctx", str(CTX))
    check(set(got_types(e)) == {"bf16", "f32"} and got_types(e)["bf16"][1] == 2 * mat,
          "HF folder (%s), torch_dtype float32: bf16 from the safetensors header: %s" % (shard, got_types(e)))
no_weights = os.path.join(TMP, "estimate-hf-config-only")
os.makedirs(no_weights, exist_ok=True)
json.dump(conf, open(os.path.join(no_weights, "config.json"), "w"))
e = estimate(no_weights, "--ctx", str(CTX))
check(set(got_types(e)) == {"f32"} and got_types(e)["f32"][1] == 4 * mat + 4 * (2 * L + 1) * dim,
      "config.json alone: torch_dtype float32 gives f32 matrices: %s" % got_types(e))
# llama2.c: 7 int32 (dim, hidden_dim, layers, heads, kv_heads, vocab (negative: untied), seq_len), f32 weights
BIN = os.path.join(SHARED, "models", "stories260K", "stories260K.bin")
with open(BIN, "rb") as f:
    dim, ffn, L, H, KVH, V, _ = struct.unpack("<7i", f.read(28))
kvd = dim // H * KVH
n = abs(V) * dim * (1 if V > 0 else 2) + L * (2 * dim + 2 * dim * dim + 2 * dim * kvd + 3 * ffn * dim) + dim
l2c = estimate(BIN, "--ctx", str(CTX))
check(l2c.get("n_params") == n and l2c.get("weights_bytes") == 4 * n and l2c.get("tied") == (V > 0),
      "llama2.c header: %s parameters, %s bytes == %d, %d" % (l2c.get("n_params"), l2c.get("weights_bytes"), n, 4 * n))

# bad input: one error line, no crash
bad = os.path.join(TMP, "estimate-bad.gguf")
with open(bad, "wb") as f:
    f.write(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
for args, code in [([bad], 1), (["no-such-preset"], 1), ([STORIES, "--type", "q3_z"], 2), ([STORIES, "--ctx", "0"], 2),
                   ([cut[:-5] + "-missing.gguf"], 1), ([os.path.join(TMP, "estimate-hf", "model.safetensors")], 1)]:
    p = run(["estimate-memory"] + args)
    lines = p.stderr.strip().splitlines()
    check(p.returncode == code and len(lines) == 1 and lines[0].startswith("llamac: error:") and not p.stdout,
          "%s refused with exit %d: rc %d, %r" % (" ".join(os.path.basename(a) for a in args), code, p.returncode, p.stderr.strip()))

print("estimate-memory: %d failed" % len(failures))
sys.exit(1 if failures else 0)
