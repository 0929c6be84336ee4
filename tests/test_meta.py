#!/usr/bin/python3
"""Meta original checkpoint folders (params.json + consolidated.NN.pth + tokenizer.model).

1. llamac's writer against an independent reader. `llamac synth --format meta` and `--format gguf`
   with the same seed; consolidated.*.pth is parsed here with the standard library only (zipfile, and
   pickle.Unpickler with a find_class allow-list and a persistent_load that builds numpy arrays), the
   shards joined as Meta's fairscale layers split them, and every tensor compared bit for bit with the
   GGUF's (tests/ref/gguf_reader.py). params.json must reproduce the hyperparameters through Meta's
   formulas; every archive entry must start on a 64-byte boundary as torch writes them.
2. llamac's reader against an independent writer. Folders written here with CPython's own pickler
   (protocols 2 and 4, fake torch classes that pickle by reference exactly as torch's do) and a
   hand-made zip: Llama 2 style (MHA, vocab_size -1, 2 shards with the embedding split along dim,
   unaligned data, "archive/" top folder), Parameters, plain dicts, untied output with an explicit
   rope_scaling_factor.
3. Same weights, same logits: `llamac logits` on the GGUF and on the Meta folders (1 and 2 shards)
   agree (f32: relative error < 1e-6; bf16/f16: same math, so identical), and greedy generation gives
   the same tokens.
4. Hostile folders: pickles asking for os.system / builtins.eval / posix.system, truncated pickles,
   huge lengths, bad memo indices, deep MARK nesting, zip entries past the end, lying zip64 fields, a
   central directory outside the file, storages too small, non-contiguous strides, ... Each: exit
   status 1, exactly one stderr line naming the file, the expected problem named, no crash or hang.

Environment: LLAMAC, LLAMAC_SHARED, LLAMAC_TMP as for every test. No torch needed.
  /usr/bin/python3 tests/test_meta.py [-k SUBSTRING] [--write-seeds]
"""
import argparse
import collections
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import types
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from gguf_reader import GGUFFile  # noqa: E402

ROOT = os.path.dirname(HERE)
LLAMAC = os.path.abspath(os.environ.get("LLAMAC", os.path.join(ROOT, "build", "llamac")))
SHARED = os.path.abspath(os.environ.get("LLAMAC_SHARED", os.path.join(ROOT, "..", "shared")))
TMP = os.path.join(os.path.abspath(os.environ.get("LLAMAC_TMP", "/tmp/llamac-test")), "meta")
L3_JSON = os.path.join(SHARED, "models", "llama3-tokenizer", "tokenizer.json")
L3_TIKTOKEN = os.path.join(SHARED, "models", "llama3-tokenizer", "tokenizer.model")
L2_SPM = os.path.join(SHARED, "models", "llama2-tokenizer", "tokenizer.model")
SPM_VOCAB_GGUF = os.path.join(SHARED, "testdata", "tokenizer", "ggml-vocab-llama-spm.gguf")
TIMEOUT = 60

F32_BOUND = 1e-6
PROMPT_IDS = [128000, 791, 4062, 14198, 39935, 35308, 927, 279]
PROMPTS = ["Once upon a time", "The llama"]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def run(args, timeout=TIMEOUT, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([LLAMAC] + args, capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_ok(args, env=None):
    rc, out, err = run(args, env=env)
    if rc != 0:
        raise RuntimeError("llamac %s: exit %d: %s" % (" ".join(args), rc, err.strip()[-400:]))
    return out


# ---- an independent reader of torch.save archives ----------------------------------------------

BF16, F16, F32 = "bf16", "f16", "f32"
STORAGE_CLASSES = {"BFloat16Storage": BF16, "HalfStorage": F16, "FloatStorage": F32}


def to_f64(raw_u8, kind):
    if kind == F32:
        return raw_u8.view("<f4").astype(np.float64)
    if kind == F16:
        return raw_u8.view("<f2").astype(np.float64)
    return (raw_u8.view("<u2").astype(np.uint32) << 16).view("<f4").astype(np.float64)


def read_pth(path):
    """{name: (kind, float64 array)} from a torch.save zip, without torch; also checks the layout."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        assert len(pkls) == 1, "data.pkl entries: %s" % pkls
        top = pkls[0][:-len("/data.pkl")]
        raw = open(path, "rb").read()
        for info in z.infolist():
            # data offset from the local header (its extra field is the 64-byte padding)
            off = info.header_offset
            nlen, xlen = struct.unpack_from("<HH", raw, off + 26)
            start = off + 30 + nlen + xlen
            assert start % 64 == 0, "%s: entry %s starts at %d, not 64-aligned" % (path, info.filename, start)
            assert info.compress_type == zipfile.ZIP_STORED
        assert z.read(top + "/version") in (b"3\n", b"3"), "version"
        if top + "/byteorder" in names:
            assert z.read(top + "/byteorder") == b"little"

        def rebuild(storage, offset, size, stride, requires_grad, hooks, *metadata):
            kind, arr = storage
            es = {F32: 4, F16: 2, BF16: 2}[kind]
            n = int(np.prod(size)) if size else 1
            expect, want = 1, []
            for d in reversed(size):
                want.insert(0, expect)
                expect *= d
            assert tuple(stride) == tuple(want), "strides %s for size %s" % (stride, size)
            return kind, to_f64(arr[offset * es:(offset + n) * es], kind).reshape(size)

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if module == "torch" and name in STORAGE_CLASSES:
                    return STORAGE_CLASSES[name]
                raise pickle.UnpicklingError("refusing %s.%s" % (module, name))

            def persistent_load(self, pid):
                tag, kind, key, location, numel = pid
                assert tag == "storage" and location == "cpu"
                data = np.frombuffer(z.read("%s/data/%s" % (top, key)), dtype=np.uint8)
                size = {F32: 4, F16: 2, BF16: 2}[kind]
                assert data.size == numel * size, "storage %s: %d bytes for %d elements" % (key, data.size, numel)
                return kind, data

        sd = Restricted(io.BytesIO(z.read(pkls[0]))).load()
    assert isinstance(sd, dict)
    return sd


# Meta's layers and how model parallelism splits them (fairscale): column-parallel -> rows,
# row-parallel -> columns, embedding -> vocabulary (Llama 3) or dim (Llama 2), norms replicated.
LAYER_NAMES = [("attention.wq", "attn_q", 0), ("attention.wk", "attn_k", 0), ("attention.wv", "attn_v", 0),
               ("attention.wo", "attn_output", 1), ("feed_forward.w1", "ffn_gate", 0),
               ("feed_forward.w3", "ffn_up", 0), ("feed_forward.w2", "ffn_down", 1),
               ("attention_norm", "attn_norm", None), ("ffn_norm", "ffn_norm", None)]


def meta_to_gguf_names(n_layers):
    m = {"tok_embeddings.weight": ("token_embd.weight", "emb"), "norm.weight": ("output_norm.weight", None),
         "output.weight": ("output.weight", 0)}
    for l in range(n_layers):
        for meta, gguf, axis in LAYER_NAMES:
            m["layers.%d.%s.weight" % (l, meta)] = ("blk.%d.%s.weight" % (l, gguf), axis)
    return m


def join_shards(shards, name, axis, dim):
    parts = [s[name][1] for s in shards]
    kinds = {s[name][0] for s in shards}
    assert len(kinds) == 1, "%s: mixed dtypes %s" % (name, kinds)
    if axis is None:
        for p in parts[1:]:
            assert np.array_equal(p, parts[0]), "%s: replicated tensor differs between shards" % name
        return parts[0]
    if axis == "emb":
        axis = 0 if parts[0].shape[1] == dim else 1
    return np.concatenate(parts, axis=axis)


def ffn_dim(p):
    h = int(2 * 4 * p["dim"] / 3)
    if p.get("ffn_dim_multiplier") is not None:
        h = int(p["ffn_dim_multiplier"] * h)
    mo = p.get("multiple_of", 256)
    return mo * ((h + mo - 1) // mo)


def check_writer(gguf_path, meta_dir, tag):
    """Every tensor of the folder (shards joined) equals the GGUF's; params.json reproduces it."""
    g = GGUFFile(gguf_path)
    p = json.load(open(os.path.join(meta_dir, "params.json")))
    n_layers = g.get("llama.block_count")
    checks = [("dim", p["dim"], g.get("llama.embedding_length")), ("n_layers", p["n_layers"], n_layers),
              ("n_heads", p["n_heads"], g.get("llama.attention.head_count")),
              ("n_kv_heads", p.get("n_kv_heads", p["n_heads"]), g.get("llama.attention.head_count_kv")),
              ("ffn (Meta's formula)", ffn_dim(p), g.get("llama.feed_forward_length")),
              ("norm_eps", np.float32(p["norm_eps"]), np.float32(g.get("llama.attention.layer_norm_rms_epsilon"))),
              ("rope_theta", np.float32(p.get("rope_theta", 10000.0)), np.float32(g.get("llama.rope.freq_base"))),
              ("use_scaled_rope", bool(p.get("use_scaled_rope", False)), "rope_freqs.weight" in g.tensors)]
    if p["vocab_size"] != -1:
        checks.append(("vocab_size", p["vocab_size"], g.tensors["token_embd.weight"].shape[1]))
    for what, a, b in checks:
        if a != b:
            fail("%s: params.json %s = %s, GGUF has %s" % (tag, what, a, b))
    shard_files = sorted(f for f in os.listdir(meta_dir) if f.startswith("consolidated.") and f.endswith(".pth"))
    try:
        shards = [read_pth(os.path.join(meta_dir, f)) for f in shard_files]
    except Exception as e:  # noqa: BLE001
        fail("%s: independent reader: %s" % (tag, e))
        return
    names = meta_to_gguf_names(n_layers)
    seen = set()
    for meta_name, (gguf_name, axis) in names.items():
        if gguf_name not in g.tensors:
            if meta_name == "output.weight" and meta_name in shards[0]:
                gguf_name = "token_embd.weight"  # tied output written as a view of the embedding
            else:
                if meta_name in shards[0]:
                    fail("%s: %s in the folder but not in the GGUF" % (tag, meta_name))
                continue
        if meta_name not in shards[0]:
            fail("%s: missing %s" % (tag, meta_name))
            continue
        seen.add(meta_name)
        try:
            ours = join_shards(shards, meta_name, axis, p["dim"])
        except AssertionError as e:
            fail("%s: %s" % (tag, e))
            continue
        ref = g.tensor(gguf_name)
        if ref.ndim == 2 and ref.shape[0] == 1 and ours.ndim == 1:
            ref = ref.reshape(-1)
        if ours.shape != ref.shape or not np.array_equal(ours, ref):
            fail("%s: %s differs from the GGUF's %s (shape %s vs %s)" % (tag, meta_name, gguf_name, ours.shape, ref.shape))
    extra = set(shards[0]) - seen
    if extra:
        fail("%s: unexpected tensors %s" % (tag, sorted(extra)[:5]))
    print("ok: writer %s: %d tensors in %d shard(s) match the GGUF bit for bit" % (tag, len(seen), len(shards)), flush=True)


# ---- an independent writer: CPython's pickler and a hand-made zip ------------------------------

def fake_torch():
    """Module objects named like torch's, so that CPython's pickler writes GLOBAL torch._utils
    _rebuild_tensor_v2 and torch.BFloat16Storage by reference, as it does for the real ones."""
    if "torch" in sys.modules and not getattr(sys.modules["torch"], "_llamac_fake", False):
        raise RuntimeError("a real torch is imported; these tests fake its classes")
    torch = types.ModuleType("torch")
    torch._llamac_fake = True
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*a):
        raise RuntimeError("not for calling")

    def _rebuild_parameter(*a):
        raise RuntimeError("not for calling")

    for f in (_rebuild_tensor_v2, _rebuild_parameter):
        f.__module__ = "torch._utils"
        f.__qualname__ = f.__name__
        setattr(utils, f.__name__, f)
    for name in ("FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage"):
        cls = type(name, (), {})
        cls.__module__ = "torch"
        setattr(torch, name, cls)
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return torch


TORCH = fake_torch()


class Storage:
    def __init__(self, cls_name, key, numel):
        self.cls, self.key, self.numel = getattr(TORCH, cls_name), key, numel


class Tensor:
    def __init__(self, storage, offset, shape, stride=None, parameter=False, extra_args=()):
        self.storage, self.offset, self.shape = storage, offset, tuple(shape)
        if stride is None:
            stride, acc = [], 1
            for d in reversed(self.shape):
                stride.insert(0, acc)
                acc *= d
        self.stride, self.parameter, self.extra_args = tuple(stride), parameter, extra_args

    def __reduce_ex__(self, protocol):
        t = (TORCH._utils._rebuild_tensor_v2,
             (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict()) + self.extra_args)
        if self.parameter:
            inner = Tensor(self.storage, self.offset, self.shape, self.stride)
            return (TORCH._utils._rebuild_parameter, (inner, False, collections.OrderedDict()))
        return t


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def torch_pickle(state, protocol=2):
    f = io.BytesIO()
    TorchPickler(f, protocol=protocol).dump(state)
    return f.getvalue()


def make_zip(entries, align=64, zip64=True, zip64_extra=False):
    """A STORED zip of [(name, bytes)]: padding like torch's when align, zip64 end records when zip64,
    zip64 extra fields in the central directory (sizes and offsets in them) when zip64_extra.
    Returns (bytes, layout) with the offsets the hostile cases patch."""
    out = bytearray()
    recs = []
    for name, data in entries:
        nb = name.encode()
        off = len(out)
        extra = b""
        if align:
            start = off + 30 + len(nb) + 4
            pad = (align - start % align) % align
            extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        crc = zlib.crc32(data) & 0xFFFFFFFF
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(nb), len(extra))
        out += nb + extra
        recs.append((nb, crc, len(data), off))
        out += data
    cd_off = len(out)
    layout = {"cd_entries": [], "locals": [r[3] for r in recs], "cd_offset": cd_off}
    for nb, crc, size, off in recs:
        layout["cd_entries"].append(len(out))
        if zip64_extra:
            x = struct.pack("<HHQQQ", 1, 24, size, size, off)
            out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(nb), len(x), 0, 0, 0, 0, 0xFFFFFFFF)
            out += nb + x
        else:
            out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, 0, 0, 0, 0x21, crc, size, size, len(nb), 0, 0,
                               0, 0, 0, off)
            out += nb
    cd_size = len(out) - cd_off
    if zip64:
        layout["end64"] = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, len(recs), len(recs), cd_size, cd_off)
        layout["locator"] = len(out)
        out += struct.pack("<IIQI", 0x07064B50, 0, layout["end64"], 1)
    layout["end"] = len(out)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(recs), len(recs), cd_size, cd_off, 0)
    return bytes(out), layout


def np_bytes(a, kind):
    a = np.ascontiguousarray(a, dtype=np.float64)
    if kind == F32:
        return a.astype("<f4").tobytes()
    if kind == F16:
        return a.astype("<f2").tobytes()
    u = a.astype(np.float32).view(np.uint32)
    return ((u >> 16) & 0xFFFF).astype("<u2").tobytes()  # exact: the values came from bf16


def write_pth(path, tensors, kind, top="archive", protocol=2, align=64, plain_dict=False, parameter=False,
              shared=None, zip64_extra=False):
    """tensors: {name: float64 array}; kind: a dtype for all, or {name: dtype}; shared: {name: other_name}
    written as views of other's storage."""
    state = {} if plain_dict else collections.OrderedDict()
    blobs, keys = [], {}
    for name, a in tensors.items():
        if shared and name in shared:
            continue
        k = kind[name] if isinstance(kind, dict) else kind
        cls = {F32: "FloatStorage", F16: "HalfStorage", BF16: "BFloat16Storage"}[k]
        key = str(len(blobs))
        keys[name] = (Storage(cls, key, a.size), a.shape)
        blobs.append((key, np_bytes(a, k)))
    for name in tensors:
        src = shared[name] if shared and name in shared else name
        st, shape = keys[src]
        state[name] = Tensor(st, 0, shape, parameter=parameter)
    pkl = torch_pickle(state, protocol)
    entries = [(top + "/data.pkl", pkl)] + [(top + "/data/" + k, b) for k, b in blobs] + [(top + "/version", b"3\n")]
    data, _ = make_zip(entries, align=align, zip64_extra=zip64_extra)
    with open(path, "wb") as f:
        f.write(data)


def gguf_to_meta(gguf_path, out_dir, kind, n_shards=1, llama2=False, tie_as_view=False, params_extra=None,
                 untie=False, **pth_args):
    """The GGUF's weights as a Meta folder written by this script (not by llamac)."""
    g = GGUFFile(gguf_path)
    n_layers = g.get("llama.block_count")
    dim = g.get("llama.embedding_length")
    names = meta_to_gguf_names(n_layers)
    full, kinds = {}, {}
    gguf_kinds = {0: F32, 1: F16, 30: BF16}
    for meta_name, (gguf_name, axis) in names.items():
        if gguf_name in g.tensors:
            t = g.tensor(gguf_name)
            full[meta_name] = t.reshape(-1) if axis is None else t
            # each tensor in the GGUF's own type (synth keeps norms f32): the same values exactly
            kinds[meta_name] = gguf_kinds[g.tensors[gguf_name].type]
    tied = "output.weight" not in full
    if tied and (untie or not tie_as_view):
        full["output.weight"] = full["tok_embeddings.weight"]
    kinds["output.weight"] = kinds["tok_embeddings.weight"]
    os.makedirs(out_dir, exist_ok=True)
    for s in range(n_shards):
        part, shared = {}, {}
        for meta_name, a in full.items():
            axis = names[meta_name][1]
            if axis == "emb":
                axis = 1 if llama2 else 0
            part[meta_name] = a if axis is None else np.split(a, n_shards, axis=axis)[s]
        if tied and tie_as_view and not untie:
            part["output.weight"] = part["tok_embeddings.weight"]
            shared["output.weight"] = "tok_embeddings.weight"
        write_pth(os.path.join(out_dir, "consolidated.%02d.pth" % s), part, kinds, shared=shared, **pth_args)
    n_heads = g.get("llama.attention.head_count")
    n_kv = g.get("llama.attention.head_count_kv", n_heads)
    ffn = g.get("llama.feed_forward_length")
    params = {"dim": dim, "n_layers": n_layers, "n_heads": n_heads, "norm_eps": 1e-5,
              "rope_theta": float(g.get("llama.rope.freq_base", 10000.0))}  # GGUF default
    if not (llama2 and n_kv == n_heads):
        params["n_kv_heads"] = n_kv
    params["vocab_size"] = -1 if llama2 else full["tok_embeddings.weight"].shape[0]
    # multiple_of / ffn_dim_multiplier for the GGUF's feed-forward size, found independently
    for mo in (256, 64, 32, 16, 8, 4, 2, 1):
        found = None
        for mult in [None] + [round(x * 0.05, 2) for x in range(2, 80)]:
            q = dict(params, multiple_of=mo)
            if mult:
                q["ffn_dim_multiplier"] = mult
            if ffn_dim(q) == ffn:
                found = q
                break
        if found:
            params = found
            break
    assert ffn_dim(params) == ffn
    if "rope_freqs.weight" in g.tensors:
        params["use_scaled_rope"] = True
    params.update(params_extra or {})
    with open(os.path.join(out_dir, "params.json"), "w") as f:
        json.dump(params, f)
    return out_dir


# ---- comparisons through the CLI ----------------------------------------------------------------

def logits_of(model, ids, tok=None):
    args = ["logits", "-m", model, "--ids", ",".join(map(str, ids))]
    if tok:
        args += ["--tokenizer", tok]
    out = run_ok(args).strip().splitlines()[-1]
    return np.asarray(json.loads(out)["logits"], dtype=np.float64)


def greedy_of(model, prompt, tok=None, n=12):
    args = ["generate", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "--json"]
    if tok:
        args += ["--tokenizer", tok]
    out = run_ok(args).strip().splitlines()[-1]
    return json.loads(out)["ids"]


def compare(tag, gguf, folder, kind, ids, tok=None, prompts=PROMPTS, gguf_tok=None):
    try:
        a = logits_of(folder, ids, tok)
        b = logits_of(gguf, ids, gguf_tok)
    except Exception as e:  # noqa: BLE001
        fail("%s: %s" % (tag, e))
        return
    if a.shape != b.shape:
        fail("%s: %d logits vs %d" % (tag, a.size, b.size))
        return
    r = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    bound = F32_BOUND if kind == F32 else 0.0
    if not r <= bound:
        fail("%s: logits differ from the GGUF's: relative error %.3g (bound %g)" % (tag, r, bound))
    same = 0
    for prompt in prompts:
        try:
            ga, gb = greedy_of(folder, prompt, tok), greedy_of(gguf, prompt, gguf_tok)
        except Exception as e:  # noqa: BLE001
            fail("%s: %s" % (tag, e))
            continue
        if ga != gb:
            fail("%s: greedy tokens for %r differ: %s vs %s" % (tag, prompt, ga, gb))
        else:
            same += 1
    print("ok: %s: logits rel. error %.2g, greedy tokens identical for %d prompt(s)" % (tag, r, same), flush=True)


def synth(args, out, env=None):
    if os.path.isdir(out):
        shutil.rmtree(out)
    elif os.path.exists(out):
        os.remove(out)
    run_ok(["synth"] + args + ["-o", out], env=env)
    return out


def folder_tokenizer(path):
    """None when this build reads the folder's own tokenizer.model (tiktoken / SentencePiece), else
    the stand-in to pass with --tokenizer."""
    rc, _, _ = run(["tokenize", "--tokenizer", path, "hello"])
    return None if rc == 0 else (L3_JSON if path == L3_TIKTOKEN else SPM_VOCAB_GGUF)


# (dtype, --type, shards, prompts for greedy generation): a few runs each, the machine is shared
LLAMA3_VARIANTS = [(F32, "f32", 1, PROMPTS), (F32, "f32", 2, PROMPTS[:1]), (BF16, "bf16", 1, PROMPTS[:1]),
                   (BF16, "bf16", 2, []), (F16, "f16", 2, [])]


def test_llama3_roundtrip(sel):
    tok = folder_tokenizer(L3_TIKTOKEN)
    if tok:
        print("note: this build does not read tiktoken files; Llama 3 folders are run with --tokenizer %s" % tok)
    for ttype in ("f32", "bf16", "f16"):
        variants = [v for v in LLAMA3_VARIANTS if v[1] == ttype]
        if sel and sel not in "llama3-" + ttype:
            continue
        g = synth(["--preset", "tiny", "--type", ttype, "--seed", "11"], os.path.join(TMP, "tiny-%s.gguf" % ttype))
        for kind, _, n, prompts in variants:
            tag = "llama3 %s %d shard(s)" % (ttype, n)
            try:
                d = synth(["--preset", "tiny", "--type", ttype, "--seed", "11", "--format", "meta"],
                          os.path.join(TMP, "tiny-%s-meta%d" % (ttype, n)), env={"LLAMAC_META_SHARDS": str(n)})
            except Exception as e:  # noqa: BLE001
                fail("%s: %s" % (tag, e))
                continue
            check_writer(g, d, tag)
            tk = os.path.join(d, "tokenizer.model")
            if not os.path.exists(tk) or open(tk, "rb").read() != open(L3_TIKTOKEN, "rb").read():
                fail("%s: tokenizer.model is not Meta's Llama 3 tiktoken file" % tag)
            compare(tag, g, d, kind, PROMPT_IDS, tok=tok, prompts=prompts)
            shutil.rmtree(d)
        os.remove(g)


def test_independent_writer(sel):
    """Folders this script writes (CPython's pickler), read by llamac."""
    if not sel or sel in "llama2-independent":
        # Llama 2 shapes with the real Llama 2 vocabulary (from a vocabulary-only GGUF)
        g = synth(["--preset", "tiny-llama2", "--type", "f32", "--seed", "5", "--vocab", SPM_VOCAB_GGUF],
                  os.path.join(TMP, "tiny-llama2.gguf"))
        for n, top, align, proto, kind in ((2, "archive", 0, 2, F32), (1, "consolidated", 64, 4, F32), (2, "x", 1, 2, BF16)):
            tag = "llama2 independent %d shard(s), top %r, align %d, protocol %d, %s" % (n, top, align, proto, kind)
            gg = g
            if kind != F32:
                gg = synth(["--preset", "tiny-llama2", "--type", "bf16", "--seed", "5", "--vocab", SPM_VOCAB_GGUF],
                           os.path.join(TMP, "tiny-llama2-bf16.gguf"))
            d = os.path.join(TMP, "l2-indep")
            shutil.rmtree(d, ignore_errors=True)
            gguf_to_meta(gg, d, kind, n_shards=n, llama2=True, top=top, align=align, protocol=proto,
                         plain_dict=(proto == 4), parameter=(n == 1))
            compare(tag, gg, d, kind, [1, 450, 11148, 29874, 338], tok=SPM_VOCAB_GGUF, prompts=["Once upon a time"])
            shutil.rmtree(d)
        for f in ("tiny-llama2.gguf", "tiny-llama2-bf16.gguf"):
            if os.path.exists(os.path.join(TMP, f)):
                os.remove(os.path.join(TMP, f))
    if not sel or sel in "llama3-independent":
        g = synth(["--preset", "tiny", "--type", "bf16", "--seed", "9"], os.path.join(TMP, "tiny9.gguf"))
        cases = [
            ("tied as a view, zip64 extras", dict(tie_as_view=True, zip64_extra=True)),
            # an untied copy of the embedding: Meta's default rope factor for untied models is 8, so
            # the GGUF's 32 must come from params.json
            ("untied, rope_scaling_factor 32", dict(untie=True, params_extra={"rope_scaling_factor": 32.0})),
        ]
        for what, kw in cases:
            tag = "llama3 independent bf16 (%s)" % what
            d = os.path.join(TMP, "l3-indep")
            shutil.rmtree(d, ignore_errors=True)
            gguf_to_meta(g, d, BF16, n_shards=2, **kw)
            compare(tag, g, d, BF16, PROMPT_IDS, tok=L3_JSON, prompts=PROMPTS[:1])
            shutil.rmtree(d)
        # and without the key, the untied model gets factor 8: different rotations, different logits
        d = os.path.join(TMP, "l3-indep")
        gguf_to_meta(g, d, BF16, untie=True)
        try:
            a, b = logits_of(d, PROMPT_IDS, L3_JSON), logits_of(g, PROMPT_IDS)
            if np.array_equal(a, b):
                fail("untied use_scaled_rope without rope_scaling_factor: expected factor 8 (logits differ from factor 32's)")
            else:
                print("ok: untied use_scaled_rope model takes Meta's factor 8", flush=True)
        except Exception as e:  # noqa: BLE001
            fail("factor 8: %s" % e)
        shutil.rmtree(d)
        os.remove(g)


def test_llama2_writer(sel):
    """tiny-llama2 through llamac's writer: needs SentencePiece .model support in the tokenizer."""
    if sel and sel not in "llama2-writer":
        return
    rc, _, err = run(["tokenize", "--tokenizer", L2_SPM, "hello"])
    if rc != 0:
        print("skip: llama2 writer (this build does not read SentencePiece .model files: %s)" % err.strip()[:120], flush=True)
        return
    g = synth(["--preset", "tiny-llama2", "--type", "bf16", "--seed", "3"], os.path.join(TMP, "l2w.gguf"))
    for n in (1, 2):
        tag = "llama2 writer bf16 %d shard(s)" % n
        d = synth(["--preset", "tiny-llama2", "--type", "bf16", "--seed", "3", "--format", "meta"],
                  os.path.join(TMP, "l2w-meta"), env={"LLAMAC_META_SHARDS": str(n)})
        check_writer(g, d, tag)
        p = json.load(open(os.path.join(d, "params.json")))
        if p.get("vocab_size") != -1:
            fail("%s: Llama 2 params.json should say vocab_size -1" % tag)
        compare(tag, g, d, BF16, [1, 450, 11148, 29874], prompts=["Once upon a time"])
        shutil.rmtree(d)
    os.remove(g)


def test_derived_tiktoken(sel):
    """A tokenizer.json with no tiktoken file beside it: the writer derives tokenizer.model from the
    vocabulary, which must be byte for byte Meta's file."""
    if sel and sel not in "writer-tiktoken":
        return
    vdir = os.path.join(TMP, "json-only")
    os.makedirs(vdir, exist_ok=True)
    shutil.copy(L3_JSON, os.path.join(vdir, "tokenizer.json"))
    d = os.path.join(TMP, "derived")
    try:
        synth(["--preset", "tiny", "--type", "bf16", "--format", "meta", "--vocab", os.path.join(vdir, "tokenizer.json")], d)
        if open(os.path.join(d, "tokenizer.model"), "rb").read() != open(L3_TIKTOKEN, "rb").read():
            fail("tokenizer.model derived from tokenizer.json differs from Meta's Llama 3 tokenizer.model")
        else:
            print("ok: tokenizer.model derived from tokenizer.json is byte for byte Meta's", flush=True)
    except Exception as e:  # noqa: BLE001
        fail("derived tiktoken: %s" % e)
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(vdir, ignore_errors=True)


def test_writer_refusals(sel):
    if sel and sel not in "writer-refusals":
        return
    d = os.path.join(TMP, "refused")
    for args, env, want in ((["--type", "q8_0"], None, "q8_0"),
                            (["--type", "f32"], {"LLAMAC_META_SHARDS": "3"}, "shards"),
                            (["--type", "f32"], {"LLAMAC_META_SHARDS": "x"}, "LLAMAC_META_SHARDS")):
        shutil.rmtree(d, ignore_errors=True)
        rc, _, err = run(["synth", "--preset", "tiny", "--format", "meta", "-o", d] + args, env=env)
        lines = [l for l in err.splitlines() if l.strip()]
        if rc == 0 or len(lines) != 1 or want not in lines[0]:
            fail("writer refusal %s %s: exit %d, stderr %r" % (args, env, rc, err[-300:]))
        else:
            print("ok: writer refuses %s %s: %s" % (args, env or "", lines[0]), flush=True)
    # A llama2.c tokenizer.bin with max_token_length 10 starts with byte 0x0A, as a SentencePiece model
    # does; Meta's code reads neither, so it must not be copied as tokenizer.model.
    bin10 = os.path.join(TMP, "tok10.bin")
    tok32(bin10)
    with open(bin10, "r+b") as f:
        f.write(struct.pack("<i", 10))
    shutil.rmtree(d, ignore_errors=True)
    rc, _, err = run(["synth", "--preset", "tiny", "--format", "meta", "--vocab", bin10, "-o", d])
    lines = [l for l in err.splitlines() if l.strip()]
    if rc == 0 or len(lines) != 1 or "cannot write tokenizer.model" not in lines[0]:
        fail("writer with a llama2.c vocabulary starting 0x0A: exit %d, stderr %r" % (rc, err[-300:]))
    else:
        print("ok: writer refuses a llama2.c vocabulary starting 0x0A: %s" % lines[0], flush=True)
    shutil.rmtree(d, ignore_errors=True)


# ---- hostile folders ----------------------------------------------------------------------------

MINI_PARAMS = {"dim": 8, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "vocab_size": 32, "multiple_of": 8,
               "norm_eps": 1e-05, "rope_theta": 10000.0}


def mini_tensors(seed=1):
    """A valid tiny model for MINI_PARAMS (ffn 24), float64 values exactly representable in bf16."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return np.round(rng.uniform(-1, 1, size=shape) * 64) / 128

    t = collections.OrderedDict()
    t["tok_embeddings.weight"] = r(32, 8)
    t["layers.0.attention.wq.weight"] = r(8, 8)
    t["layers.0.attention.wk.weight"] = r(4, 8)
    t["layers.0.attention.wv.weight"] = r(4, 8)
    t["layers.0.attention.wo.weight"] = r(8, 8)
    t["layers.0.feed_forward.w1.weight"] = r(24, 8)
    t["layers.0.feed_forward.w2.weight"] = r(8, 24)
    t["layers.0.feed_forward.w3.weight"] = r(24, 8)
    # norms 1 + k/128, |k| <= 16: exact in bf16 too, so a bf16 norm converts to the same f32
    t["layers.0.attention_norm.weight"] = 1 + np.round(rng.uniform(-1, 1, 8) * 16) / 128
    t["layers.0.ffn_norm.weight"] = 1 + np.round(rng.uniform(-1, 1, 8) * 16) / 128
    t["norm.weight"] = 1 + np.round(rng.uniform(-1, 1, 8) * 16) / 128
    t["output.weight"] = r(32, 8)
    return t


def tok32(path):
    """llama2.c tokenizer.bin with 32 tokens (as in fuzz/fuzz_llama2c.c)."""
    out = struct.pack("<i", 8)
    toks = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [bytes([ord("a") + i]) for i in range(29)]
    for i, t in enumerate(toks):
        out += struct.pack("<fi", -float(i), len(t)) + t
    with open(path, "wb") as f:
        f.write(out)


def mini_state(kind=BF16, norm_kind=None, **tensor_overrides):
    """(state dict of Tensor objects, [(key, bytes)]) for the mini model."""
    state, blobs = collections.OrderedDict(), []
    for i, (name, a) in enumerate(mini_tensors().items()):
        k = norm_kind if norm_kind and a.ndim == 1 else kind
        cls = {F32: "FloatStorage", F16: "HalfStorage", BF16: "BFloat16Storage"}[k]
        key = str(i)
        state[name] = Tensor(Storage(cls, key, a.size), 0, a.shape)
        blobs.append((key, np_bytes(a, k)))
    for name, fn in tensor_overrides.items():
        fn(state, blobs, name)
    return state, blobs


def mini_pth(pkl=None, blobs=None, top="archive", extra_entries=(), drop_entries=(), kind=BF16, norm_kind=None,
             **zip_args):
    if pkl is None or blobs is None:
        state, b = mini_state(kind, norm_kind)
        pkl = torch_pickle(state) if pkl is None else pkl
        blobs = b if blobs is None else blobs
    entries = [(top + "/data.pkl", pkl)] + [(top + "/data/" + k, b) for k, b in blobs if k not in drop_entries]
    entries += [(top + "/version", b"3\n")] + list(extra_entries)
    return make_zip(entries, **zip_args)


def patch(data, off, fmt, *vals):
    b = bytearray(data)
    struct.pack_into(fmt, b, off, *vals)
    return bytes(b)


def valid_pkl():
    return torch_pickle(mini_state()[0])


def hostile_cases():
    """[(name, files {relative path: bytes or None}, expected text in the error)]"""
    cases = []
    good_zip, L = mini_pth()

    def pth(data):
        return {"consolidated.00.pth": data}

    def pk(pkl_bytes, want):
        return pth(mini_pth(pkl=pkl_bytes)[0]), want

    # classes outside the allow-list, by GLOBAL and by STACK_GLOBAL
    for mod, name in (("os", "system"), ("builtins", "eval"), ("posix", "system"), ("subprocess", "Popen"),
                      ("torch", "load"), ("torch._utils", "_rebuild_from_type_v2"), ("collections", "defaultdict")):
        body = b"\x80\x02c" + mod.encode() + b"\n" + name.encode() + b"\nq\x00X\x05\x00\x00\x00echo!\x85R."
        cases.append(("global_%s_%s" % (mod, name),) + pk(body, "pickle asks for %s.%s" % (mod, name)))
    body = b"\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x85R."
    sg = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
    cases.append(("stack_global_os_system",) + pk(sg, "pickle asks for os.system"))
    # a refused class inside an otherwise valid state dict
    vp = valid_pkl()
    cases.append(("global_mid_dict",) + pk(vp.replace(b"ctorch._utils\n_rebuild_tensor_v2\n", b"cbuiltins\nexec\n"),
                                           "builtins.exec"))
    # truncated pickles and huge lengths
    cases.append(("pickle_truncated_half",) + pk(vp[:len(vp) // 2], "truncated"))
    cases.append(("pickle_no_stop",) + pk(vp[:-1], "truncated"))
    cases.append(("pickle_empty",) + pk(b"", "truncated"))
    cases.append(("binunicode_huge",) + pk(b"\x80\x02X\xf0\xff\xff\xffabc.", "truncated"))
    cases.append(("binunicode8_huge",) + pk(b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"x.", "truncated"))
    cases.append(("binbytes_huge",) + pk(b"\x80\x03B\xff\xff\xff\x7f.", "truncated"))
    cases.append(("frame_huge",) + pk(b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"}.", "frame"))
    cases.append(("long4_huge",) + pk(b"\x80\x02\x8b\x00\x00\x00\x40.", "truncated"))
    cases.append(("long1_9_bytes",) + pk(b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".", "too large"))
    # memo
    cases.append(("memo_get_out_of_range",) + pk(b"\x80\x02h\xc8.", "memo index 200 out of range"))
    cases.append(("memo_long_get_out_of_range",) + pk(b"\x80\x02}q\x00j\xff\xff\xff\xff.", "memo index 4294967295 out of range"))
    cases.append(("memo_put_huge",) + pk(b"\x80\x02}r\xff\xff\xff\xff.", "out of order"))
    # deep nesting: a million MARKs, nested lists, nested tuples
    cases.append(("deep_marks",) + pk(b"\x80\x02" + b"(" * 1000000 + b".", "stack underflow"))
    cases.append(("deep_lists",) + pk(b"\x80\x02" + b"]" * 200000 + b"a" * 199999 + b".", "not a state dict"))
    cases.append(("deep_tuples",) + pk(b"\x80\x02)" + b"\x85" * 300000 + b".", "not a state dict"))
    cases.append(("dup_bomb",) + pk(b"\x80\x02]" + b"2" * 500000 + b"e.", "no MARK"))
    # other pickle misuse
    cases.append(("unknown_opcode",) + pk(b"\x80\x02}\xff.", "opcode 0xff"))
    cases.append(("text_opcode",) + pk(b"\x80\x02I42\n.", "opcode 'I'"))
    cases.append(("protocol_9",) + pk(b"\x80\x09}.", "protocol 9"))
    cases.append(("stack_underflow",) + pk(b"\x80\x02s.", "stack underflow"))
    cases.append(("not_a_dict",) + pk(b"\x80\x02]q\x00.", "not a state dict"))
    cases.append(("no_tensors",) + pk(b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u.", "no tensors"))
    cases.append(("persid_not_storage",) + pk(b"\x80\x02(X\x03\x00\x00\x00fooK\x01tQ.", "persistent id"))
    cases.append(("call_storage_class",) + pk(b"\x80\x02ctorch\nFloatStorage\n)R.", "calling torch.FloatStorage"))

    def override(name, fn):
        state, blobs = mini_state()
        fn(state, blobs)
        return pth(mini_pth(pkl=torch_pickle(state), blobs=blobs)[0])

    w = "layers.0.attention.wq.weight"
    cases.append(("storage_too_small", override(w, lambda s, b: setattr(s[w].storage, "numel", 60)),
                  "its storage holds 60"))
    cases.append(("offset_past_storage", override(w, lambda s, b: setattr(s[w], "offset", 10)), "from offset 10"))
    cases.append(("noncontiguous_strides", override(w, lambda s, b: setattr(s[w], "stride", (1, 8))), "not contiguous"))
    cases.append(("negative_size", override(w, lambda s, b: setattr(s[w], "shape", (-8, -8))), "invalid size"))
    cases.append(("storage_entry_short", override(w, lambda s, b: b.__setitem__(1, (b[1][0], b[1][1][:50]))),
                  "archive entry holds 50"))
    cases.append(("storage_key_missing", override(w, lambda s, b: setattr(s[w].storage, "key", "99")), "not in the archive"))
    cases.append(("storage_key_slash", override(w, lambda s, b: setattr(s[w].storage, "key", "../x")), "storage key"))
    cases.append(("int64_weight", override(w, lambda s, b: (setattr(s[w].storage, "cls", TORCH.LongStorage),
                                                            b.__setitem__(1, (b[1][0], bytes(512))))), "LongStorage"))
    cases.append(("wrong_shape", override(w, lambda s, b: setattr(s[w], "shape", (4, 8))), "has shape [4, 8]"))
    cases.append(("missing_tensor", override(w, lambda s, b: s.pop(w)), "missing tensor " + w))
    cases.append(("rebuild_extra_args", override(w, lambda s, b: setattr(s[w], "extra_args", (1, 2))), "6 or 7 arguments"))
    # duplicate names: the same key set twice in one SETITEMS
    dup = vp.replace(b"layers.0.attention.wk.weight", b"layers.0.attention.wq.weight")
    cases.append(("duplicate_tensor_name",) + pk(dup, "two tensors named"))

    # zip level
    e0 = L["cd_entries"][1]  # central entry of data/0 (the embedding)
    cases.append(("zip_entry_past_end", pth(patch(patch(good_zip, e0 + 20, "<II", 1 << 30, 1 << 30), L["locals"][1] + 18, "<II",
                                                  1 << 30, 1 << 30)), "past"))
    cases.append(("zip_local_header_outside", pth(patch(good_zip, e0 + 42, "<I", len(good_zip) + 100)), "local header"))
    cases.append(("zip_cd_outside_file", pth(patch(good_zip, L["end"] + 16, "<I", len(good_zip) + 1000)),
                  "zip64 end record contradicts"))
    g32, L32 = mini_pth(zip64=False)
    cases.append(("zip_cd_outside_file_no_zip64", pth(patch(g32, L32["end"] + 16, "<I", len(g32) + 1000)),
                  "central directory"))
    cases.append(("zip_cd_count_lies", pth(patch(g32, L32["end"] + 8, "<HH", 60000, 60000)), "cannot hold"))
    cases.append(("zip_cd_size_lies", pth(patch(g32, L32["end"] + 12, "<I", 1 << 31)), "outside the file"))
    cases.append(("zip64_cd_offset_lies", pth(patch(patch(good_zip, L["end64"] + 48, "<Q", 1 << 60), L["end"] + 16, "<I",
                                                    0xFFFFFFFF)), "outside the file"))
    cases.append(("zip64_count_lies", pth(patch(patch(good_zip, L["end64"] + 24, "<QQ", 1 << 50, 1 << 50), L["end"] + 8, "<HH",
                                                0xFFFF, 0xFFFF)), "entries"))
    cases.append(("zip64_locator_outside", pth(patch(good_zip, L["locator"] + 8, "<Q", 1 << 40)), "zip64 end record offset"))
    cases.append(("zip64_record_size_lies", pth(patch(good_zip, L["end64"] + 4, "<Q", 1 << 40)), "zip64 end record claims"))
    gx, LX = mini_pth(zip64_extra=True)
    ex = LX["cd_entries"][1]
    nlen = struct.unpack_from("<H", gx, ex + 28)[0]
    lx = LX["locals"][1]
    cases.append(("zip64_extra_size_lies", pth(patch(patch(gx, ex + 46 + nlen + 4, "<QQ", 1 << 40, 1 << 40), lx + 18, "<II",
                                                     0xFFFFFFFF, 0xFFFFFFFF)), "past"))
    cases.append(("zip64_extra_size_contradicts_local", pth(patch(gx, ex + 46 + nlen + 4, "<QQ", 1 << 40, 1 << 40)), "contradict"))
    cases.append(("zip64_extra_offset_lies", pth(patch(gx, ex + 46 + nlen + 20, "<Q", 1 << 45)), "local header"))
    cases.append(("zip64_extra_short", pth(patch(gx, ex + 46 + nlen + 2, "<H", 8)), "zip64 extra field"))
    cases.append(("zip_no_end_record", pth(good_zip[:L["end"]]), "not a zip archive"))
    cases.append(("zip_truncated_half", pth(good_zip[:len(good_zip) // 2]), "not a zip archive"))
    cases.append(("zip_empty_file", pth(b""), "empty"))
    cases.append(("not_a_zip", pth(b"GGUF" + b"\x00" * 200), "not a zip archive"))
    # overlapping entries: data/0 claims 100 more bytes (sizes deferred to the central directory)
    size0 = struct.unpack_from("<I", good_zip, e0 + 24)[0]
    ov = patch(good_zip, e0 + 20, "<II", size0 + 100, size0 + 100)
    ov = patch(ov, L["locals"][1] + 6, "<H", 8)
    cases.append(("zip_overlapping_entries", pth(ov), "overlaps"))
    pk0 = L["cd_entries"][0]
    cases.append(("zip_deflate", pth(patch(patch(good_zip, pk0 + 10, "<H", 8), L["locals"][0] + 8, "<H", 8)), "deflate"))
    cases.append(("zip_encrypted", pth(patch(good_zip, pk0 + 8, "<H", 1)), "encrypted"))
    cases.append(("zip_pickle_crc", pth(patch(good_zip, L["locals"][0] + 200, "<B", 0x55)), "CRC"))
    cases.append(("zip_no_data_pkl", pth(mini_pth(top="archive")[0].replace(b"archive/data.pkl", b"archive/data.pkx")),
                  "no data.pkl"))
    cases.append(("zip_two_data_pkl", pth(mini_pth(extra_entries=[("other/data.pkl", b"x")])[0]), "several data.pkl"))
    cases.append(("zip_duplicate_names", pth(mini_pth(extra_entries=[("archive/version", b"3\n")])[0]), "two entries named"))
    cases.append(("zip_big_endian", pth(mini_pth(extra_entries=[("archive/byteorder", b"big")])[0]), "little-endian"))
    cases.append(("zip_storage_entry_missing", pth(mini_pth(drop_entries=("3",))[0]), "not in the archive"))

    # folder level
    cases.append(("params_not_json", {"params.json": b"{dim: 8"}, "params.json"))
    cases.append(("params_dim_string", {"params.json": json.dumps(dict(MINI_PARAMS, dim="8")).encode()}, "\"dim\""))
    cases.append(("params_heads_bad", {"params.json": json.dumps(dict(MINI_PARAMS, n_heads=3)).encode()}, "head count"))
    cases.append(("params_ffn_mismatch", {"params.json": json.dumps(dict(MINI_PARAMS, ffn_dim_multiplier=3.0)).encode()},
                  "has shape [24, 8], expected [64, 8]"))
    cases.append(("params_vocab_lies", {"params.json": json.dumps(dict(MINI_PARAMS, vocab_size=64)).encode()}, "vocab_size 64"))
    cases.append(("params_missing_dim", {"params.json": json.dumps({k: v for k, v in MINI_PARAMS.items() if k != "dim"}).encode()},
                  "missing \"dim\""))
    cases.append(("tokenizer_broken", {"tokenizer.model": b"\x0a\xff\xff\xff\xff\x0f garbage"}, "tokenizer.model"))
    cases.append(("no_shards", {"consolidated.00.pth": None}, "no consolidated.00.pth"))
    cases.append(("shard_gap", {"consolidated.02.pth": good_zip}, "not numbered"))
    # a second shard that does not fit the first
    state, blobs = mini_state()
    half = collections.OrderedDict((k, v) for k, v in state.items() if "wq" not in k)
    cases.append(("shard_missing_tensor", {"consolidated.01.pth": mini_pth(pkl=torch_pickle(half), blobs=blobs)[0],
                                           "params.json": json.dumps(dict(MINI_PARAMS, vocab_size=-1)).encode()},
                  "consolidated.01.pth: missing tensor layers.0.attention.wq.weight"))
    cases.append(("shards_same_shapes", {"consolidated.01.pth": good_zip}, "contradicts"))
    cases.append(("shards_same_shapes_vocab_unknown", {"consolidated.01.pth": good_zip,
                                                       "params.json": json.dumps(dict(MINI_PARAMS, vocab_size=-1)).encode()},
                  "not a row slice"))
    return cases


def test_hostile(sel):
    base = os.path.join(TMP, "hostile")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    tok = os.path.join(base, "tok32.bin")
    tok32(tok)

    def folder(name, files):
        d = os.path.join(base, name)
        os.makedirs(d)
        with open(os.path.join(d, "params.json"), "w") as f:
            json.dump(MINI_PARAMS, f)
        good = mini_pth()[0]
        with open(os.path.join(d, "consolidated.00.pth"), "wb") as f:
            f.write(good)
        for rel, data in files.items():
            p = os.path.join(d, rel)
            if data is None:
                os.remove(p)
            else:
                with open(p, "wb") as f:
                    f.write(data)
        return d

    # controls: the same harness accepts the valid mini model (bf16, f32, a hand-made unaligned zip)
    for kind, align in ((BF16, 64), (F32, 64), (F32, 0), (F16, 1)) if not sel or sel in "hostile-control" else ():
        d = folder("control_%s_%d" % (kind, align), {"consolidated.00.pth": mini_pth(kind=kind, align=align)[0]})
        for cmd in (["info", d, "--tokenizer", tok], ["logits", "-m", d, "--tokenizer", tok, "--ids", "1,5,9", "--top", "3"]):
            rc, out, err = run(cmd, timeout=10)
            if rc != 0:
                fail("control %s: %s: exit %d: %s" % (kind, cmd[0], rc, err.strip()))
        shutil.rmtree(d)
    # norms stored as bf16 / f16 (as in Meta's files) are converted to the f32 the f32-norm file holds
    if not sel or sel in "hostile-control":
        ref = None
        for norm_kind in (F32, BF16, F16):
            d = folder("norms_%s" % norm_kind, {"consolidated.00.pth": mini_pth(kind=BF16, norm_kind=norm_kind)[0]})
            try:
                lg = logits_of(d, [1, 5, 9, 3], tok)
                if ref is None:
                    ref = lg
                elif not np.array_equal(lg, ref):
                    fail("norms stored as %s give other logits than f32 norms" % norm_kind)
            except Exception as e:  # noqa: BLE001
                fail("norms %s: %s" % (norm_kind, e))
            shutil.rmtree(d)
        print("ok: bf16 and f16 norms convert exactly", flush=True)
    n = 0
    for name, files, want in hostile_cases():
        if sel and sel not in "hostile" and sel not in name:
            continue
        d = folder(name, files)
        n += 1
        cmds = (["info", d, "--tokenizer", tok], ["logits", "-m", d, "--tokenizer", tok, "--ids", "1,2"])
        if name == "tokenizer_broken":
            # the folder's own broken tokenizer is an error; a tokenizer the user names replaces it
            for cmd in cmds:
                rc, _, err = run(cmd, timeout=10)
                if rc != 0:
                    fail("%s: %s with --tokenizer should load: %s" % (name, cmd[0], err.strip()))
            cmds = (["info", d], ["logits", "-m", d, "--ids", "1,2"])
        for cmd in cmds:
            try:
                rc, out, err = run(cmd, timeout=10)
            except subprocess.TimeoutExpired:
                fail("%s: %s hangs (10 s)" % (name, cmd[0]))
                continue
            lines = err.splitlines()
            if rc < 0:
                fail("%s: %s died of signal %d: %s" % (name, cmd[0], -rc, err[-300:]))
            elif rc != 1 or len(lines) != 1:
                fail("%s: %s: exit %d with %d stderr lines: %r" % (name, cmd[0], rc, len(lines), err[-400:]))
            elif d not in lines[0]:
                fail("%s: %s: the error does not name the file: %s" % (name, cmd[0], lines[0]))
            elif want not in lines[0]:
                fail("%s: %s: expected %r in: %s" % (name, cmd[0], want, lines[0]))
            elif cmd[0] == "info":
                print("ok: %-32s %s" % (name, lines[0][len("llamac: error: "):][:150]), flush=True)
        shutil.rmtree(d)
    print("ok: %d hostile folders refused" % n, flush=True)
    shutil.rmtree(base, ignore_errors=True)


def write_seeds():
    """Seeds for fuzz/corpus/zip and fuzz/corpus/pickle (small: the mini model)."""
    zdir, pdir = os.path.join(ROOT, "fuzz", "corpus", "zip"), os.path.join(ROOT, "fuzz", "corpus", "pickle")
    os.makedirs(zdir, exist_ok=True)
    os.makedirs(pdir, exist_ok=True)
    seeds_zip = {
        "mini_bf16.pth": mini_pth()[0],
        "mini_f32_unaligned.pth": mini_pth(kind=F32, align=0, zip64=False)[0],
        "mini_f16_zip64_extra.pth": mini_pth(kind=F16, zip64_extra=True, top="consolidated")[0],
        "bad_os_system.pth": mini_pth(pkl=b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.")[0],
    }
    st, bl = mini_state()
    seeds_zip["mini_params_proto4.pth"] = mini_pth(pkl=torch_pickle(dict(st), 4), blobs=bl)[0]
    for name, data in seeds_zip.items():
        with open(os.path.join(zdir, name), "wb") as f:
            f.write(data)
    seeds_pkl = {
        "mini_proto2.pkl": valid_pkl(),
        "mini_proto4_dict.pkl": torch_pickle(dict(mini_state()[0]), 4),
        "mini_proto5.pkl": torch_pickle(mini_state()[0], 5),
        "bad_eval.pkl": b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.",
        "bad_memo.pkl": b"\x80\x02}q\x00h\x05.",
    }
    for name, data in seeds_pkl.items():
        with open(os.path.join(pdir, name), "wb") as f:
            f.write(data)
    for d in (zdir, pdir):
        for f in sorted(os.listdir(d)):
            print("%s/%s: %d bytes" % (d, f, os.path.getsize(os.path.join(d, f))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="run only the parts / hostile cases whose name contains this")
    ap.add_argument("--write-seeds", action="store_true", help="(re)write the fuzz seed corpora and exit")
    a = ap.parse_args()
    if a.write_seeds:
        write_seeds()
        return 0
    os.makedirs(TMP, exist_ok=True)
    sel = a.k
    test_writer_refusals(sel)
    test_derived_tiktoken(sel)
    test_llama3_roundtrip(sel)
    test_independent_writer(sel)
    test_llama2_writer(sel)
    test_hostile(sel)
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    print("all Meta folder tests passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
