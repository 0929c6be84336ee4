#!/usr/bin/python3
"""Hugging Face checkpoint folders: written by `llamac synth --format hf`, loaded by `llamac -m DIR`.

Independent checks (nothing here trusts llamac's own reading of its own files):
  * weights: model.safetensors is read by the few lines of numpy below (u64 header length, JSON
    header, raw little-endian data), q/k rows are put back into GGUF order with the permute() of
    llama.cpp's convert_hf_to_gguf.py, and every tensor must equal, bit for bit, the one
    tests/ref/gguf_reader.py reads from the GGUF synth wrote from the same seed; config.json must state
    the GGUF's hyperparameters;
  * Llama 3 rope scaling: the frequencies transformers' _compute_llama3_parameters gives for
    config.json's rope_scaling (numpy, float64) must equal the GGUF's base^(-2i/d) / rope_freqs[i]
    within f32 rounding (2e-7);
  * logits: a float64 numpy forward pass of the folder itself (tests/ref/llama_ref.py with the
    weights from safetensors and transformers' rotate-half RoPE, no permutation) against
    `llamac logits -m DIR`: f32/f16 relative error < 1e-5 (the f32 bound of tests/ref/README.md),
    on the tiny preset (GQA, tied, llama3 scaling) and on a small untied model without scaling.
Consistency checks through llamac: the same weights as GGUF and as a folder (single file and
sharded) give logits within 1e-6 relative (max|a-b| / max|a|) for f32, f16 and bf16, and the same
greedy tokens.
Bad input: hostile safetensors headers, shard indexes, config.json, generation_config.json and
tokenizer.json each make the CLI exit 1 with exactly one stderr line naming the offending file;
never a crash or a hang.
"""

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from gguf_reader import GGUFFile  # noqa: E402
from llama_ref import LlamaRef  # noqa: E402

LLAMAC = os.environ.get("LLAMAC", "build/llamac")
SHARED = os.environ.get("LLAMAC_SHARED", os.path.join(HERE, "..", "..", "shared"))
TMP = os.path.join(os.environ.get("LLAMAC_TMP", "/tmp/llamac-test"), "hf")
TOK512 = os.path.join(SHARED, "models", "stories260K", "tok512.bin")

SAME_BOUND = 1e-6     # the same weights through llamac, two layouts
F32_BOUND = 1e-5      # llamac (f32) vs float64 reference, tests/ref/README.md
PROMPT10 = [128000, 791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679]
PROMPTS = [PROMPT10, PROMPT10[:1], PROMPT10[:4]]

failures = []
lines = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def run(args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([LLAMAC] + args, capture_output=True, text=True, timeout=timeout, env=e)
    if p.returncode != 0:
        raise RuntimeError("llamac %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.strip()[-400:]))
    return p.stdout


def logits(model, ids, extra=()):
    out = run(["logits", "-m", model, "--ids", ",".join(map(str, ids))] + list(extra))
    return np.asarray(json.loads(out.strip().splitlines()[-1])["logits"], dtype=np.float64)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ---- an independent safetensors reader --------------------------------------------------------

def read_safetensors(path, bits=False):
    """{name: float64 array of the stored shape (bits: the raw element bit patterns)}, and the header."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = np.frombuffer(data, dtype=np.uint8, count=end - b, offset=base + b)
        if bits:
            out[name] = raw.view({"F32": "<u4", "F16": "<u2", "BF16": "<u2"}[e["dtype"]]).reshape(e["shape"])
            continue
        if e["dtype"] == "F32":
            a = raw.view("<f4")
        elif e["dtype"] == "F16":
            a = raw.view("<f2")
        elif e["dtype"] == "BF16":
            a = (raw.view("<u2").astype(np.uint32) << 16).view("<f4")
        else:
            raise ValueError("%s: dtype %s" % (name, e["dtype"]))
        out[name] = a.astype(np.float64).reshape(e["shape"])
    return out, header


def read_folder(d, bits=False):
    """All tensors of a folder (single file or shards), {name: (array, dtype)}."""
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) \
        else ["model.safetensors"]
    out = {}
    for fn in files:
        ts, hdr = read_safetensors(os.path.join(d, fn), bits)
        for k, v in ts.items():
            out[k] = (v, hdr[k]["dtype"])
    return out


GGUF_TO_HF = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}
LAYER_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj"}


def hf_name(g):
    if g in GGUF_TO_HF:
        return GGUF_TO_HF[g]
    _, layer, part, _ = g.split(".")
    return "model.layers.%s.%s.weight" % (layer, LAYER_NAMES[part])


def permute_hf_to_gguf(w, n_head):
    """llama.cpp convert_hf_to_gguf.py's LlamaModel.permute (for k: n_head = n_head_kv)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_inv_freq(cfg, dim):
    """transformers' rope init: _compute_default_rope_parameters, then _compute_llama3_parameters."""
    inv = 1.0 / (float(cfg.get("rope_theta", 10000.0)) ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    rs = cfg.get("rope_scaling")
    if not rs or rs.get("rope_type", rs.get("type")) == "default":
        return inv
    assert rs["rope_type"] == "llama3"
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    lo_wl, hi_wl = old / lo, old / hi
    wl = 2 * np.pi / inv
    inv_l = np.where(wl > lo_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wl < hi_wl) & ~(wl > lo_wl)
    return np.where(medium, smoothed, inv_l)


class HFRef(LlamaRef):
    """tests/ref/llama_ref.py's float64 forward pass on a Hugging Face folder: weights from
    safetensors as stored (q/k in transformers' order), RoPE as transformers' rotate_half applies it
    (dimension i pairs with i + head_dim/2), frequencies from config.json."""

    def __init__(self, folder):  # noqa: super().__init__ reads a GGUF; the same fields, from HF files
        cfg = json.load(open(os.path.join(folder, "config.json")))
        self.mode = "exact"
        self.act_round = dict(self.DEFAULT_ACT_ROUND)
        self.q8_scale_f16 = True
        self.n_layer = cfg["num_hidden_layers"]
        self.n_embd = cfg["hidden_size"]
        self.n_head = cfg["num_attention_heads"]
        self.n_head_kv = cfg.get("num_key_value_heads") or self.n_head
        self.head_dim = self.n_embd // self.n_head
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.rope_dim = self.head_dim
        self.dtype = np.dtype(np.float64)
        self.hf = {k: v for k, (v, _) in read_folder(folder).items()}
        self._w = {}
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        self.out_name = "token_embd.weight" if self.tied else "output.weight"
        self.types = {}
        self.n_vocab = cfg["vocab_size"]
        self.freqs = llama3_inv_freq(cfg, self.head_dim)

    def w(self, name):
        if name not in self.types:
            self.types[name] = 0
        return self.hf[hf_name(name)]

    def _shared_site(self, x, xr_prev, wname, prev_wname, site, ctx):
        return xr_prev  # exact mode: no rounding to share

    def rope(self, x, pos):
        ang = pos[:, None].astype(np.float64) * self.freqs[None, :]
        c = np.cos(ang)[:, None, :]
        s = np.sin(ang)[:, None, :]
        h = self.rope_dim // 2
        x1, x2 = x[..., :h], x[..., h:2 * h]
        out = x.copy()
        out[..., :h] = x1 * c - x2 * s
        out[..., h:2 * h] = x2 * c + x1 * s
        return out


# ---- the tiny preset: GGUF vs folder ----------------------------------------------------------

def synth(fmt, ttype, out, env=None):
    run(["synth", "--preset", "tiny", "--type", ttype, "--seed", "7", "--format", fmt, "-o", out], env=env)


def check_weights(folder, gguf_path, tag):
    """The folder's tensors, read by numpy and un-permuted, equal the GGUF's bit for bit (same
    element type, and the same bit patterns); config.json states
    the GGUF's hyperparameters; config.json's rope scaling gives the GGUF's rope frequencies."""
    g = GGUFFile(gguf_path)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    hf = read_folder(folder, bits=True)
    md = g.metadata
    want = {"hidden_size": "llama.embedding_length", "intermediate_size": "llama.feed_forward_length",
            "num_hidden_layers": "llama.block_count", "num_attention_heads": "llama.attention.head_count",
            "num_key_value_heads": "llama.attention.head_count_kv", "max_position_embeddings": "llama.context_length",
            "vocab_size": "llama.vocab_size"}
    for k, gk in want.items():
        if cfg.get(k) != int(md[gk]):
            fail("%s: config.json %s = %r, GGUF %s = %r" % (tag, k, cfg.get(k), gk, md[gk]))
    for k, gk in (("rms_norm_eps", "llama.attention.layer_norm_rms_epsilon"), ("rope_theta", "llama.rope.freq_base")):
        if np.float32(cfg[k]) != np.float32(md[gk]):
            fail("%s: config.json %s = %r, GGUF %r" % (tag, k, cfg[k], md[gk]))
    if cfg.get("architectures") != ["LlamaForCausalLM"] or cfg.get("model_type") != "llama":
        fail("%s: config.json does not declare LlamaForCausalLM / llama" % tag)
    if cfg.get("tie_word_embeddings") != ("output.weight" not in g.tensors):
        fail("%s: tie_word_embeddings %r disagrees with the GGUF" % (tag, cfg.get("tie_word_embeddings")))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    seen = set()
    for name in g.tensors:
        if name == "rope_freqs.weight":
            continue
        hn = hf_name(name)
        seen.add(hn)
        if hn not in hf:
            fail("%s: %s (%s) missing from the folder" % (tag, hn, name))
            continue
        a, dt = hf[hn]
        if name.endswith("attn_q.weight"):
            a = permute_hf_to_gguf(a, n_head)
        elif name.endswith("attn_k.weight"):
            a = permute_hf_to_gguf(a, n_kv)
        ti = g.tensors[name]
        b = g.raw(name).copy().view(a.dtype).reshape(list(reversed(ti.shape)))  # a copy: g closes below
        if {"F32": 0, "F16": 1, "BF16": 30}[dt] != ti.type:
            fail("%s: %s is %s, GGUF %s type %d" % (tag, hn, dt, name, ti.type))
        elif a.shape != b.shape:
            fail("%s: %s shape %s vs GGUF %s" % (tag, hn, a.shape, b.shape))
        elif not np.array_equal(a, b):
            fail("%s: %s differs from GGUF %s in %d elements" % (tag, hn, name, int(np.sum(a != b))))
    extra = set(hf) - seen
    if extra:
        fail("%s: unexpected tensors in the folder: %s" % (tag, sorted(extra)[:5]))
    lines.append("%-14s %d tensors equal the GGUF's bit for bit (q/k un-permuted by numpy), config.json agrees"
                 % (tag, len(seen)))
    # rope scaling: transformers' formula on config.json vs the GGUF's rope_freqs
    if "rope_freqs.weight" in g.tensors:
        d = cfg["hidden_size"] // n_head
        ff = g.tensor("rope_freqs.weight").reshape(-1)
        gguf_freqs = float(md["llama.rope.freq_base"]) ** (-np.arange(0, d, 2, dtype=np.float64) / d) / ff
        hf_freqs = llama3_inv_freq(cfg, d)
        r = float(np.max(np.abs(hf_freqs - gguf_freqs) / hf_freqs))
        lines.append("%-14s llama3 rope frequencies: transformers' formula vs GGUF rope_freqs %.1e" % (tag, r))
        if r > 2e-7 or not cfg.get("rope_scaling"):
            fail("%s: llama3 rope frequencies differ by %.3e (rope_scaling %r)" % (tag, r, cfg.get("rope_scaling")))
    g.close()


def check_eos_list(folder):
    """generation_config.json's eos_token_id list ends generation: make the first greedy token one."""
    prompt = "Once upon a time"
    first = json.loads(run(["generate", "-m", folder, "-p", prompt, "-n", "3", "--temp", "0", "--json"]))["ids"][0]
    d = folder + "-eos"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for fn in os.listdir(folder):
        if fn != "generation_config.json":
            os.symlink(os.path.join(folder, fn), os.path.join(d, fn))
    g = json.load(open(os.path.join(folder, "generation_config.json")))
    g["eos_token_id"] = [g["eos_token_id"], first]
    json.dump(g, open(os.path.join(d, "generation_config.json"), "w"))
    out = json.loads(run(["generate", "-m", d, "-p", prompt, "-n", "20", "--temp", "0", "--json"]))
    if out["ids"] != [] or out["finish_reason"] != "stop":
        fail("eos_token_id list %s: generation went on: %s (%s)" % (g["eos_token_id"], out["ids"], out["finish_reason"]))
    else:
        lines.append("%-14s generation_config.json eos_token_id list %s stops generation" % ("f32", g["eos_token_id"]))
    shutil.rmtree(d, ignore_errors=True)


def check_tiny():
    os.makedirs(TMP, exist_ok=True)
    ref_single = {}
    for ttype in ("f32", "f16", "bf16"):
        gguf = os.path.join(TMP, "tiny-%s.gguf" % ttype)
        folder = os.path.join(TMP, "tiny-%s-hf" % ttype)
        try:
            synth("gguf", ttype, gguf)
            synth("hf", ttype, folder)
        except Exception as e:  # noqa: BLE001
            fail("synth %s: %s" % (ttype, e))
            continue
        check_weights(folder, gguf, "tiny %s" % ttype)
        hfref = HFRef(folder) if ttype in ("f32", "f16") else None
        # every prompt length on f32; the others differ only in the weight type
        for ids in PROMPTS if ttype == "f32" else PROMPTS[:1]:
            tag = "%s/%d tok" % (ttype, len(ids))
            try:
                a, b = logits(folder, ids), logits(gguf, ids)
            except Exception as e:  # noqa: BLE001
                fail("%s: %s" % (tag, e))
                continue
            if ids is PROMPT10:
                ref_single[ttype] = a
            r = rel(a, b)
            msg = "%-14s folder vs GGUF %.1e (bound %.0e)" % (tag, r, SAME_BOUND)
            if r >= SAME_BOUND:
                fail("%s: folder vs GGUF logits differ by %.3e >= %.0e" % (tag, r, SAME_BOUND))
            if hfref is not None:
                z = hfref.forward(ids)
                rr = rel(a, z)
                msg += "; vs float64 numpy on the folder %.1e (bound %.0e)" % (rr, F32_BOUND)
                if rr >= F32_BOUND:
                    fail("%s: folder logits vs float64 reference %.3e >= %.0e" % (tag, rr, F32_BOUND))
            lines.append(msg)
        # greedy generation: the same tokens
        gen_prompts = ("Once upon a time", "The capital of France is")
        for prompt in gen_prompts if ttype == "f32" else gen_prompts[:1]:
            try:
                ga = json.loads(run(["generate", "-m", folder, "-p", prompt, "-n", "20", "--temp", "0", "--json"]))
                gb = json.loads(run(["generate", "-m", gguf, "-p", prompt, "-n", "20", "--temp", "0", "--json"]))
            except Exception as e:  # noqa: BLE001
                fail("%s generate: %s" % (ttype, e))
                continue
            if ga["ids"] != gb["ids"] or ga["prompt_ids"] != gb["prompt_ids"] or len(ga["ids"]) != 20:
                fail("%s greedy %r: folder %s vs GGUF %s" % (ttype, prompt, ga["ids"], gb["ids"]))
        lines.append("%-14s greedy 20 tokens identical (%d prompt(s))" % (ttype, 2 if ttype == "f32" else 1))
        if ttype == "f32":
            check_eos_list(folder)
        # info reads the folder
        try:
            info = run(["info", folder])
            if "(hf)" not in info or "scaled" not in info:
                fail("%s: info does not report an hf model with rope scaling:\n%s" % (ttype, info))
        except Exception as e:  # noqa: BLE001
            fail("%s info: %s" % (ttype, e))
        if ttype != "f32":
            shutil.rmtree(folder, ignore_errors=True)
            os.remove(gguf)

    # Llama 2: untied, no rope scaling, the SentencePiece tokenizer.model copied into the folder
    try:
        gguf, folder = os.path.join(TMP, "tiny-llama2.gguf"), os.path.join(TMP, "tiny-llama2-hf")
        run(["synth", "--preset", "tiny-llama2", "--seed", "7", "-o", gguf])
        run(["synth", "--preset", "tiny-llama2", "--seed", "7", "--format", "hf", "-o", folder])
        check_weights(folder, gguf, "tiny-llama2")
        cfg = json.load(open(os.path.join(folder, "config.json")))
        if cfg.get("rope_scaling") is not None or cfg.get("tie_word_embeddings") is not False:
            fail("tiny-llama2: config.json rope_scaling %r tie %r" % (cfg.get("rope_scaling"), cfg.get("tie_word_embeddings")))
        if not os.path.exists(os.path.join(folder, "tokenizer.model")):
            fail("tiny-llama2: no tokenizer.model in the folder")
        a = json.loads(run(["logits", "-m", folder, "-p", "Once upon a time"]))
        b = json.loads(run(["logits", "-m", gguf, "-p", "Once upon a time"]))
        r = rel(np.asarray(a["logits"]), np.asarray(b["logits"]))
        lines.append("%-14s prompt ids %s; folder vs GGUF %.1e (bound %.0e)" % ("tiny-llama2", a["prompt_ids"], r, SAME_BOUND))
        if a["prompt_ids"] != b["prompt_ids"] or r >= SAME_BOUND:
            fail("tiny-llama2: ids %s vs %s, logits differ by %.3e" % (a["prompt_ids"], b["prompt_ids"], r))
        # Real Llama 2 repositories also ship a SentencePiece-style tokenizer.json (model type BPE with
        # byte_fallback and a Metaspace pre-tokenizer) that llamac does not read: tokenizer.model must
        # still be used, giving the same ids.
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump({"version": "1.0", "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
                "pre_tokenizer": None, "model": {"type": "BPE", "byte_fallback": True, "vocab": {}, "merges": []}}, f)
        c = json.loads(run(["logits", "-m", folder, "-p", "Once upon a time"]))
        if c["prompt_ids"] != b["prompt_ids"]:
            fail("tiny-llama2 with an unreadable tokenizer.json: ids %s, want %s" % (c["prompt_ids"], b["prompt_ids"]))
        shutil.rmtree(folder, ignore_errors=True)
        os.remove(gguf)
    except Exception as e:  # noqa: BLE001
        fail("tiny-llama2: %s" % e)

    # sharded: model-0000N-of-0000M.safetensors + index
    folder = os.path.join(TMP, "tiny-f32-sharded")
    try:
        synth("hf", "f32", folder, env={"LLAMAC_SHARD_BYTES": "300000"})
        files = sorted(os.listdir(folder))
        shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
        if "model.safetensors.index.json" not in files or len(shards) < 3 or "model.safetensors" in files:
            fail("sharded: files %s" % files)
        idx = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
        total = sum(os.path.getsize(os.path.join(folder, s)) for s in shards)
        if not (0 < idx["metadata"]["total_size"] < total) or set(idx["weight_map"].values()) != set(shards):
            fail("sharded: index %s" % idx["metadata"])
        check_weights(folder, os.path.join(TMP, "tiny-f32.gguf"), "sharded f32")
        a = logits(folder, PROMPT10)
        if "f32" in ref_single and not np.array_equal(a, ref_single["f32"]):
            fail("sharded: logits differ from the single-file folder by %.3e" % rel(a, ref_single["f32"]))
        lines.append("%-14s %d shards + index: logits equal the single file's" % ("sharded f32", len(shards)))
    except Exception as e:  # noqa: BLE001
        fail("sharded: %s" % e)
    shutil.rmtree(folder, ignore_errors=True)

    # quantized types cannot be written as safetensors: a clear refusal
    p = subprocess.run([LLAMAC, "synth", "--preset", "tiny", "--type", "q8_0", "--format", "hf", "-o",
                        os.path.join(TMP, "q8")], capture_output=True, text=True, timeout=60)
    err = p.stderr.strip().splitlines()
    if p.returncode != 1 or len(err) != 1 or "q8_0" not in err[0]:
        fail("synth --type q8_0 --format hf: exit %d, stderr %r" % (p.returncode, p.stderr))
    shutil.rmtree(os.path.join(TMP, "q8"), ignore_errors=True)


# ---- a small hand-made folder, and hostile variants of it --------------------------------------

SMALL_CFG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": False, "max_position_embeddings": 256,
    "vocab_size": 512, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32",
}


def small_tensors(cfg=SMALL_CFG, seed=3):
    rng = np.random.default_rng(seed)
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = d // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    t = {"model.embed_tokens.weight": rng.uniform(-1, 1, (v, d)), "model.norm.weight": 1 + 0.1 * rng.uniform(-1, 1, d),
         "lm_head.weight": rng.uniform(-1, 1, (v, d)) * 0.3}
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        for n, shape in (("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (kv, d)), ("self_attn.v_proj", (kv, d)),
                         ("self_attn.o_proj", (d, d)), ("mlp.gate_proj", (f, d)), ("mlp.up_proj", (f, d)),
                         ("mlp.down_proj", (d, f))):
            t[p + n + ".weight"] = rng.uniform(-1, 1, shape) * np.sqrt(3.0 / shape[1])
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.uniform(-1, 1, d)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.uniform(-1, 1, d)
    return {k: v.astype("<f4") for k, v in t.items()}


def st_bytes(tensors, header_extra=None, pad=8, entries=None, hlen=None):
    """A safetensors file; entries overrides header entries, hlen the stored header length."""
    header, blob, off = {}, b"", 0
    for name, a in tensors.items():
        raw = a.tobytes()
        dtype = {"<f4": "F32", "<i8": "I64", "<f8": "F64"}[a.dtype.str]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blob += raw
        off += len(raw)
    if header_extra:
        header.update(header_extra)
    if entries:
        for k, v in entries.items():
            if v is None:
                header.pop(k, None)
            else:
                header[k] = v
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % pad)
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + blob


def make_small(d, cfg=None, st=None, files=None):
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg if isinstance(cfg, str) else json.dumps(SMALL_CFG if cfg is None else cfg))
    if st is not False:
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st if st is not None else st_bytes(small_tensors()))
    for name, content in (files or {}).items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())


def cfg_with(**kw):
    c = dict(SMALL_CFG)
    for k, v in kw.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def entry(name, **kw):
    """The header entry of tensor name in the base file, changed."""
    off = 0
    for n, a in small_tensors().items():
        if n == name:
            e = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
            e.update(kw)
            return {name: e}
        off += a.nbytes
    raise KeyError(name)


def offsets_of(name):
    return entry(name)[name]["data_offsets"]


def sharded(d, weight_map_override=None, index_text=None):
    """The small model as two shards with an index (optionally corrupted)."""
    ts = small_tensors()
    names = list(ts)
    a = {k: ts[k] for k in names[:10]}
    b = {k: ts[k] for k in names[10:]}
    wm = {k: "model-00001-of-00002.safetensors" for k in a}
    wm.update({k: "model-00002-of-00002.safetensors" for k in b})
    if weight_map_override:
        wm.update(weight_map_override)
    idx = index_text if index_text is not None else json.dumps({"metadata": {"total_size": 1}, "weight_map": wm})
    make_small(d, st=False, files={"model-00001-of-00002.safetensors": st_bytes(a),
                                   "model-00002-of-00002.safetensors": st_bytes(b),
                                   "model.safetensors.index.json": idx})


def bad_cases():
    """(name, builder(dir), file the message must name)."""
    ts = small_tensors()
    emb = "model.embed_tokens.weight"
    q0 = "model.layers.0.self_attn.q_proj.weight"
    st = "model.safetensors"
    b0, e0 = offsets_of(q0)
    cases = [
        # a tensor llamac would leave out of the computation: refused, as llama.cpp refuses one
        ("st: unused I64 and F64 tensors", lambda d: make_small(d, st=st_bytes(dict(ts, **{
            "extra.i64": np.arange(3, dtype="<i8"), "extra.f64": np.ones((2, 2), "<f8"), "extra.empty": np.zeros(0, "<f4")}))), st),
        ("st: header length 2^63", lambda d: make_small(d, st=st_bytes(ts, hlen=1 << 63)), st),
        ("st: header length past the file", lambda d: make_small(d, st=st_bytes(ts, hlen=10 ** 7)), st),
        ("st: header length over 100 MB", lambda d: make_small(d, st=st_bytes(ts, hlen=200 * 10 ** 6)), st),
        ("st: 5-byte file", lambda d: make_small(d, st=b"\x05\0\0\0\0"), st),
        ("st: empty file", lambda d: make_small(d, st=b""), st),
        ("st: header not JSON", lambda d: make_small(d, st=struct.pack("<Q", 16) + b"{not json at all"), st),
        ("st: header a JSON array", lambda d: make_small(d, st=struct.pack("<Q", 8) + b"[1,2,3] "), st),
        ("st: header truncated JSON", lambda d: make_small(d, st=struct.pack("<Q", 40) + json.dumps(
            {emb: {"dtype": "F32", "shape": [512, 32], "data_offsets": [0, 65536]}}).encode()[:40]), st),
        ("st: junk after the JSON", lambda d: make_small(d, st=(lambda h: struct.pack("<Q", len(h)) + h)(
            b'{"__metadata__": {}} x')), st),
        ("st: offsets past the end", lambda d: make_small(d, st=st_bytes(ts, entries=entry(
            q0, data_offsets=[10 ** 9, 10 ** 9 + (e0 - b0)]))), st),
        ("st: end before begin", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, data_offsets=[e0, b0]))), st),
        ("st: overlapping tensors", lambda d: make_small(d, st=st_bytes(ts, entries=entry(
            q0, data_offsets=[b0 - 64, e0 - 64]))), st),
        ("st: size not shape x dtype", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, shape=[32, 31]))), st),
        ("st: shape overflows", lambda d: make_small(d, st=st_bytes(ts, entries=entry(
            q0, shape=[2 ** 40, 2 ** 40, 2 ** 40]))), st),
        ("st: negative dimension", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, shape=[-32, -32]))), st),
        ("st: fractional offset", lambda d: make_small(d, st=st_bytes(ts, entries=entry(
            q0, data_offsets=[b0 + 0.5, e0 + 0.5]))), st),
        ("st: offsets as strings", lambda d: make_small(d, st=st_bytes(ts, entries=entry(
            q0, data_offsets=[str(b0), str(e0)]))), st),
        ("st: unknown dtype", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, dtype="Q9_K"))), st),
        ("st: dtype I32 on a weight", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, dtype="I32"))), st),
        ("st: entry not an object", lambda d: make_small(d, st=st_bytes(ts, entries={q0: [1, 2]})), st),
        ("st: nine dimensions", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, shape=[1] * 7 + [32, 32]))), st),
        ("st: missing tensor", lambda d: make_small(d, st=st_bytes(ts, entries={q0: None})), st),
        ("st: wrong shape", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, shape=[16, 64]))), st),
        ("st: 3-D weight", lambda d: make_small(d, st=st_bytes(ts, entries=entry(q0, shape=[2, 16, 32]))), st),
        ("st: duplicate name", lambda d: make_small(d, st=(lambda h: struct.pack("<Q", len(h)) + h + b"\0" * 8)(
            b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            b'"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}')), st),
        ("st: truncated data", lambda d: make_small(d, st=st_bytes(ts)[:-100]), st),
        ("st: many tiny values", lambda d: make_small(d, st=(lambda h: struct.pack("<Q", len(h)) + h)(
            b'{"__metadata__": [' + b"0," * 3000000 + b'0]}')), st),
        ("st: deep nesting", lambda d: make_small(d, st=(lambda h: struct.pack("<Q", len(h)) + h)(
            b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}")), st),
        ("st: a folder without weights", lambda d: make_small(d, st=False), "model.safetensors"),
        ("st: model.safetensors is a directory", lambda d: (make_small(d, st=False),
                                                           os.makedirs(os.path.join(d, st))), st),
        # shard indexes
        ("index: shard ../", lambda d: sharded(d, {q0: "../model-00001-of-00002.safetensors"}), "index.json"),
        ("index: shard absolute path", lambda d: sharded(d, {q0: "/etc/passwd"}), "index.json"),
        ("index: shard in a subfolder", lambda d: sharded(d, {q0: "sub/x.safetensors"}), "index.json"),
        ("index: shard ..", lambda d: sharded(d, {q0: ".."}), "index.json"),
        ("index: shard file missing", lambda d: sharded(d, {q0: "model-00003-of-00003.safetensors"}),
         "model-00003-of-00003.safetensors"),
        ("index: tensor in the wrong shard", lambda d: sharded(d, {q0: "model-00002-of-00002.safetensors"}),
         "model-00002-of-00002.safetensors"),
        ("index: tensor not in the map", lambda d: sharded(d, {}, json.dumps({"weight_map": {
            emb: "model-00001-of-00002.safetensors"}})), "index.json"),
        ("index: not JSON", lambda d: sharded(d, index_text="{weight_map"), "index.json"),
        ("index: weight_map a list", lambda d: sharded(d, index_text='{"weight_map": []}'), "index.json"),
        ("index: shard name a number", lambda d: sharded(d, {q0: 7}), "index.json"),
        # config.json
        ("config: not JSON", lambda d: make_small(d, cfg="{hidden_size: 32"), "config.json"),
        ("config: a JSON list", lambda d: make_small(d, cfg="[1]"), "config.json"),
        ("config: empty", lambda d: make_small(d, cfg=""), "config.json"),
        ("config: not llama", lambda d: make_small(d, cfg_with(architectures=["MistralForCausalLM"], model_type="mistral")),
         "config.json"),
    ]
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        cases.append(("config: missing %s" % k, lambda d, k=k: make_small(d, cfg_with(**{k: None})), "config.json"))
    cases += [
        ("config: heads do not divide hidden_size", lambda d: make_small(d, cfg_with(num_attention_heads=5)), "config.json"),
        ("config: kv heads do not divide heads", lambda d: make_small(d, cfg_with(num_key_value_heads=3)), "config.json"),
        ("config: more kv heads than heads", lambda d: make_small(d, cfg_with(num_key_value_heads=8)), "config.json"),
        ("config: vocab_size != embedding rows", lambda d: make_small(d, cfg_with(vocab_size=500)), "config.json"),
        ("config: head_dim inconsistent", lambda d: make_small(d, cfg_with(head_dim=16)), "config.json"),
        ("config: hidden_size fractional", lambda d: make_small(d, cfg_with(hidden_size=32.5)), "config.json"),
        ("config: hidden_size a string", lambda d: make_small(d, cfg_with(hidden_size="32")), "config.json"),
        ("config: hidden_size huge", lambda d: make_small(d, cfg_with(hidden_size=10 ** 12)), "config.json"),
        ("config: hidden_size negative", lambda d: make_small(d, cfg_with(hidden_size=-32)), "config.json"),
        ("config: zero layers", lambda d: make_small(d, cfg_with(num_hidden_layers=0)), "config.json"),
        ("config: more layers than stored", lambda d: make_small(d, cfg_with(num_hidden_layers=3)), st),
        ("config: rms_norm_eps 0", lambda d: make_small(d, cfg_with(rms_norm_eps=0)), "config.json"),
        ("config: rope_theta negative", lambda d: make_small(d, cfg_with(rope_theta=-1)), "config.json"),
        ("config: rope_scaling yarn", lambda d: make_small(d, cfg_with(rope_scaling={"rope_type": "yarn", "factor": 4.0})),
         "config.json"),
        ("config: rope_scaling llama3 without factor", lambda d: make_small(d, cfg_with(rope_scaling={
            "rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192})), "config.json"),
        ("config: rope_scaling low >= high", lambda d: make_small(d, cfg_with(rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192})), "config.json"),
        ("config: rope_scaling a string", lambda d: make_small(d, cfg_with(rope_scaling="llama3")), "config.json"),
        ("config: hidden_act gelu", lambda d: make_small(d, cfg_with(hidden_act="gelu")), "config.json"),
        ("config: attention_bias", lambda d: make_small(d, cfg_with(attention_bias=True)), "config.json"),
        ("config: eos id outside the vocabulary", lambda d: make_small(d, cfg_with(eos_token_id=[2, 100000])), "config.json"),
        ("config: tie_word_embeddings a string", lambda d: make_small(d, cfg_with(tie_word_embeddings="yes")), "config.json"),
        ("config: untied without lm_head", lambda d: make_small(d, st=st_bytes(ts, entries={"lm_head.weight": None})), st),
        ("generation_config: not JSON", lambda d: make_small(d, files={"generation_config.json": "{"}),
         "generation_config.json"),
        ("generation_config: temperature -1", lambda d: make_small(d, files={"generation_config.json": json.dumps(
            {"do_sample": True, "temperature": -1})}), "generation_config.json"),
        ("generation_config: top_p 2", lambda d: make_small(d, files={"generation_config.json": json.dumps(
            {"do_sample": True, "top_p": 2})}), "generation_config.json"),
        ("tokenizer.json: WordPiece", lambda d: make_small(d, files={"tokenizer.json": json.dumps(
            {"model": {"type": "WordPiece", "vocab": {"a": 0}}})}), "tokenizer.json"),
        ("tokenizer.json: not JSON", lambda d: make_small(d, files={"tokenizer.json": "{"}), "tokenizer.json"),
    ]
    return cases


def odd_but_legal():
    """Folders that must load and give the base folder's logits exactly."""
    ts = small_tensors()
    q0 = "model.layers.0.self_attn.q_proj.weight"
    # holes between tensors and a header length that is not a multiple of 8 (every tensor misaligned)
    holes = {}
    off = 0
    blob = b""
    for n, a in ts.items():
        blob += b"\xee" * 6
        off += 6
        holes[n] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blob += a.tobytes()
        off += a.nbytes
    h = json.dumps(holes).encode() + b"   "
    holes_file = struct.pack("<Q", len(h)) + h + blob
    return [
        ("misaligned header length", lambda d: make_small(d, st=st_bytes(ts, pad=0, header_extra={"__metadata__": {"x": "y"}}))),
        ("holes and misaligned tensors", lambda d: make_small(d, st=holes_file)),
        ("rope_scaling default, nulls", lambda d: make_small(d, cfg_with(rope_scaling={"rope_type": "default"},
                                                                         num_key_value_heads=2, head_dim=None,
                                                                         bos_token_id=None))),
        ("index with shards", lambda d: sharded(d)),
        ("tensors in reverse order", lambda d: make_small(d, st=st_bytes(dict(reversed(list(ts.items())))))),
    ], q0


def run_cli(d, extra=(), tokenizer=True):
    args = [LLAMAC, "logits", "-m", d] + (["--tokenizer", TOK512] if tokenizer else []) + ["--ids", "1,45,300,7"] + list(extra)
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None, "", "timeout"
    return p.returncode, p.stdout, p.stderr


def check_small():
    base = os.path.join(TMP, "small")
    make_small(base)
    rc, out, err = run_cli(base)
    if rc != 0:
        fail("small folder: exit %s: %s" % (rc, err.strip()))
        return
    z0 = np.asarray(json.loads(out)["logits"])
    ref = HFRef(base)
    r = rel(z0, ref.forward([1, 45, 300, 7]))
    lines.append("%-14s untied, GQA, no rope scaling: vs float64 numpy %.1e (bound %.0e)" % ("small f32", r, F32_BOUND))
    if r >= F32_BOUND:
        fail("small folder vs float64 reference: %.3e >= %.0e" % (r, F32_BOUND))

    d = os.path.join(TMP, "small-case")
    cases, _ = odd_but_legal()
    for name, build in cases:
        build(d)
        rc, out, err = run_cli(d)
        if rc != 0:
            fail("legal '%s': exit %s: %s" % (name, rc, err.strip()))
            continue
        z = np.asarray(json.loads(out)["logits"])
        if not np.array_equal(z, z0):
            fail("legal '%s': logits differ from the base folder by %.3e" % (name, rel(z, z0)))
    lines.append("%-14s %d odd but legal folders load and give the same logits" % ("small", len(cases)))

    bad = bad_cases()
    n_ok = 0
    for name, build, must_name in bad:
        build(d)
        # a tokenizer named with --tokenizer replaces the folder's: its own file is read only without one
        rc, out, err = run_cli(d, tokenizer=not name.startswith("tokenizer.json"))
        errl = err.strip("\n").split("\n") if err else []
        if rc is None:
            fail("bad '%s': hang (killed after 20 s)" % name)
        elif rc < 0:
            fail("bad '%s': killed by signal %d" % (name, -rc))
        elif rc != 1 or len(errl) != 1 or not errl[0].startswith("llamac: error: ") or must_name not in errl[0]:
            fail("bad '%s': exit %d, want 1 and one stderr line naming %s; got %r" % (name, rc, must_name, err[:600]))
        else:
            n_ok += 1
            if os.environ.get("VERBOSE"):
                print("  %-42s %s" % (name, errl[0]))
    lines.append("%-14s %d/%d hostile folders refused with one line naming the file" % ("bad input", n_ok, len(bad)))
    shutil.rmtree(d, ignore_errors=True)


def main():
    if not os.path.exists(os.path.join(SHARED, "models", "llama3-tokenizer", "tokenizer.json")):
        print("SKIP: no shared test data at %s" % SHARED)
        return 0
    os.makedirs(TMP, exist_ok=True)
    check_tiny()
    check_small()
    for ln in lines:
        print(ln)
    if failures:
        print("%d FAILURE(S)" % len(failures))
        return 1
    shutil.rmtree(TMP, ignore_errors=True)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
