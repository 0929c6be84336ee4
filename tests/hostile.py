#!/usr/bin/env python3
"""Hostile-input generators for llamac (importable; no dependencies beyond the standard library).

Everything here writes bytes by hand, so a mutation can produce files that no well-behaved writer
would: lying counts, absurd lengths, unknown types, overlapping tensors, contradictory hyperparameters.

    import hostile
    g = hostile.Gguf.load("stories260K.gguf")   # structured, re-serializable copy of a real file
    g.set_kv("llama.block_count", hostile.U32, 0)
    open("bad.gguf", "wb").write(g.to_bytes())

    hostile.gguf_cases(path)      -> [(name, payload, level)]   level: see LEVELS
    hostile.unsupported_gguf_cases(path) -> [(name, payload, level, word)]  (refused with `word` in the error)
    hostile.llama2c_cases(path)   -> [(name, payload, level)]   (checkpoint .bin)
    hostile.tok_cases(path)       -> [(name, payload, level)]   (llama2.c tokenizer.bin)
    hostile.as_bytes(payload)     -> bytes of the file
    hostile.tiny_model_gguf(...)  -> bytes of a small valid model (for fuzz seeds)
"""
import math
import struct

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
              U64: "<Q", I64: "<q", F64: "<d"}

# ggml tensor types used here
GGML_F32, GGML_F16 = 0, 1
GGML_TYPE_SIZE = {GGML_F32: (1, 4), GGML_F16: (1, 2), 2: (32, 18), 8: (32, 34), 30: (1, 2)}

# How bad a mutated file is, i.e. which llamac commands must reject it:
#   "container": the file is not a valid GGUF / checkpoint at all -> every command fails
#   "model":     valid container, but not a usable model -> generate/logits fail; info and tokenize may
#                succeed (the vocabulary alone can be fine)
#   "vocab":     the vocabulary is unusable -> generate/logits/tokenize fail; info may succeed
#   "vocab_model": vocabulary fine on its own but inconsistent with the model -> generate/logits fail
#   "ok":        a legal (if odd) file: success or a clean error, but never a crash or a hang
#   "valid":     a legal file every command must accept (controls that prove the harness works)
LEVELS = ("container", "model", "vocab", "vocab_model", "ok", "valid")

TWO63 = 1 << 63
TWO64M1 = (1 << 64) - 1


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & TWO64M1)


def i32(v):
    return struct.pack("<i", v)


def enc_str(b):
    if isinstance(b, str):
        b = b.encode()
    return u64(len(b)) + b


def enc_value(t, v):
    """Serializes a value of type t. Arrays: v = (elem_type, [items]); items encoded recursively."""
    if t == STRING:
        return enc_str(v)
    if t == ARRAY:
        et, items = v
        return u32(et) + u64(len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def enc_array_raw(et, n, payload=b""):
    """An array header claiming n elements of type et, followed by whatever payload is given."""
    return u32(et) + u64(n) + payload


def nested_array(depth, innermost=None):
    """An array value nested `depth` levels deep: [[[...[7]...]]] — each level is one element."""
    if innermost is None:
        innermost = enc_value(ARRAY, (U8, [7]))  # "u32 type, u64 n, elems" of an array of U8
    return (u32(ARRAY) + u64(1)) * (depth - 1) + innermost


class KV:
    __slots__ = ("key", "type", "payload")

    def __init__(self, key, type_, payload):
        self.key = key if isinstance(key, bytes) else key.encode()
        self.type = type_
        self.payload = payload

    def to_bytes(self):
        return enc_str(self.key) + u32(self.type) + self.payload


class Tensor:
    __slots__ = ("name", "ne", "type", "offset", "n_dims")

    def __init__(self, name, ne, type_, offset, n_dims=None):
        self.name = name if isinstance(name, bytes) else name.encode()
        self.ne = list(ne)
        self.type = type_
        self.offset = offset
        self.n_dims = len(self.ne) if n_dims is None else n_dims

    def to_bytes(self):
        return enc_str(self.name) + u32(self.n_dims) + b"".join(u64(x) for x in self.ne) + u32(self.type) + u64(self.offset)

    def nbytes(self):
        bs, ts = GGML_TYPE_SIZE[self.type]
        return math.prod(self.ne) // bs * ts


class Reader:
    def __init__(self, data, pos=0):
        self.d, self.p = data, pos

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def fmt(self, f):
        return struct.unpack(f, self.take(struct.calcsize(f)))[0]

    def string(self):
        return self.take(self.fmt("<Q"))

    def value(self, t):
        if t == STRING:
            return self.string()
        if t == ARRAY:
            et, n = self.fmt("<I"), self.fmt("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.fmt(SCALAR_FMT[t])


class Gguf:
    """A GGUF file as editable parts. to_bytes() lays it out again (data section realigned)."""

    def __init__(self):
        self.magic = b"GGUF"
        self.version = 3
        self.kvs = []
        self.tensors = []
        self.data = b""
        self.n_kv = None        # override the count written in the header
        self.n_tensors = None
        self.align = None       # physical alignment used when writing; None: from general.alignment or 32
        self.tail = b""         # bytes appended after the data section

    @classmethod
    def parse(cls, raw):
        g = cls()
        r = Reader(raw)
        g.magic = r.take(4)
        g.version = r.fmt("<I")
        nt, nk = r.fmt("<Q"), r.fmt("<Q")
        for _ in range(nk):
            key = r.string()
            t = r.fmt("<I")
            start = r.p
            r.value(t)
            g.kvs.append(KV(key, t, raw[start:r.p]))
        for _ in range(nt):
            name = r.string()
            nd = r.fmt("<I")
            ne = [r.fmt("<Q") for _ in range(nd)]
            g.tensors.append(Tensor(name, ne, r.fmt("<I"), r.fmt("<Q")))
        a = g.alignment()
        start = (r.p + a - 1) // a * a
        g.data = raw[start:]
        return g

    @classmethod
    def load(cls, path):
        with open(path, "rb") as f:
            return cls.parse(f.read())

    def copy(self):
        g = Gguf()
        g.magic, g.version, g.data, g.n_kv, g.n_tensors, g.align, g.tail = (
            self.magic, self.version, self.data, self.n_kv, self.n_tensors, self.align, self.tail)
        g.kvs = [KV(k.key, k.type, k.payload) for k in self.kvs]
        g.tensors = [Tensor(t.name, t.ne, t.type, t.offset, t.n_dims) for t in self.tensors]
        return g

    # ---- kv helpers
    def find(self, key):
        key = key.encode() if isinstance(key, str) else key
        for kv in self.kvs:
            if kv.key == key:
                return kv
        return None

    def get(self, key):
        kv = self.find(key)
        return Reader(kv.payload).value(kv.type)

    def set_kv(self, key, t, v, raw=False):
        """Replaces (in place) or appends key. raw=True: v is the already-serialized payload."""
        payload = v if raw else enc_value(t, v)
        kv = self.find(key)
        if kv:
            kv.type, kv.payload = t, payload
        else:
            self.kvs.append(KV(key, t, payload))
        return self

    def del_kv(self, key):
        key = key.encode() if isinstance(key, str) else key
        self.kvs = [k for k in self.kvs if k.key != key]
        return self

    # ---- tensor helpers
    def tensor(self, name):
        name = name.encode() if isinstance(name, str) else name
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def del_tensor(self, name):
        name = name.encode() if isinstance(name, str) else name
        self.tensors = [t for t in self.tensors if t.name != name]
        return self

    def alignment(self):
        if self.align:
            return self.align
        kv = self.find("general.alignment")
        if kv and kv.type in (U32, U64, I32):
            a = Reader(kv.payload).value(kv.type)
            if a > 0 and a & (a - 1) == 0 and a <= 1 << 20:
                return a
        return 32

    def header_bytes(self):
        return (self.magic + u32(self.version)
                + u64(len(self.tensors) if self.n_tensors is None else self.n_tensors)
                + u64(len(self.kvs) if self.n_kv is None else self.n_kv)
                + b"".join(k.to_bytes() for k in self.kvs)
                + b"".join(t.to_bytes() for t in self.tensors))

    def to_bytes(self):
        h = self.header_bytes()
        a = self.alignment()
        pad = (-len(h)) % a
        return h + b"\0" * pad + self.data + self.tail


# ---------------------------------------------------------------------------------------------------
# GGUF mutations of a real model (stories260K.gguf)


class Truncated:
    def __init__(self, raw, n):
        self.raw, self.n = raw, n

    def to_bytes(self):
        return self.raw[:self.n]


def as_bytes(obj):
    """Case payloads are bytes or lazily serialized objects (keeps 300 variants of a 1 MB file cheap)."""
    return bytes(obj) if isinstance(obj, (bytes, bytearray)) else obj.to_bytes()


def gguf_truncations(raw, header_len, n_points=50):
    """Truncation points: every field boundary of the fixed header and of the first kv, a spread
    through the rest of the header, and n_points evenly through the file."""
    pts = {0, 1, 3, 4, 5, 7, 8, 12, 15, 16, 20, 23, 24}
    klen = struct.unpack_from("<Q", raw, 24)[0]
    first = 32 + klen
    pts |= {25, 31, 32, 33, first - 1, first, first + 2, first + 4, first + 8, first + 12, first + 13}
    pts |= {header_len * i // 16 for i in range(1, 16)}
    pts |= {header_len - 1, header_len}
    pts |= {len(raw) * i // n_points for i in range(1, n_points)}
    pts |= {len(raw) - 1, len(raw) - 4}
    return sorted(p for p in pts if 0 <= p < len(raw))


def gguf_cases(path):
    """[(name, bytes, level)] hostile variants of a real Llama GGUF (built for stories260K.gguf:
    5 layers, dim 64, 8 heads, 4 kv heads, ffn 172, vocab 512)."""
    raw = open(path, "rb").read()
    base = Gguf.parse(raw)
    header_len = len(base.header_bytes())
    cases = []

    def add(name, obj, level):
        cases.append((name, obj, level))  # bytes, or an object with to_bytes(): see as_bytes()

    def mut(fn):
        g = base.copy()
        fn(g)
        return g

    def patch(off, data):
        b = bytearray(raw)
        b[off:off + len(data)] = data
        return bytes(b)

    add("control_unmodified_roundtrip", base, "valid")

    # ---- fixed header
    add("magic_GGUX", patch(0, b"GGUX"), "container")
    add("magic_byteswapped", patch(0, b"FUGG"), "container")
    add("magic_zero", patch(0, b"\0\0\0\0"), "container")
    for v in (0, 1, 4, 0xFFFFFFFF):
        add(f"version_{v}", patch(4, u32(v)), "container")
    add("version_2_ok", patch(4, u32(2)), "valid")
    for n in (TWO63, TWO64M1, 1 << 62, 1 << 32, len(base.tensors) + 1):
        add(f"n_tensors_{n}", patch(8, u64(n)), "container")
    add("n_tensors_minus1", patch(8, u64(len(base.tensors) - 1)), "model")  # last info becomes data: a tensor missing
    add("n_tensors_0", patch(8, u64(0)), "model")
    for n in (TWO63, TWO64M1, 1 << 62, len(base.kvs) + 1):
        add(f"n_kv_{n}", patch(16, u64(n)), "container")
    add("n_kv_0", patch(16, u64(0)), "container")
    add("n_kv_minus1", patch(16, u64(len(base.kvs) - 1)), "container")

    # ---- truncation
    for p in gguf_truncations(raw, header_len):
        add(f"truncated_at_{p}", Truncated(raw, p), "container")

    # ---- strings
    for n in (TWO63, TWO64M1, 1 << 32, len(raw) + 1, len(raw) - 24 - 8):
        add(f"first_key_len_{n}", patch(24, u64(n)), "container")
    for n in (TWO64M1, 1 << 40):
        add(f"string_value_len_{n}", mut(lambda g: g.set_kv("tokenizer.ggml.model", STRING, u64(n) + b"llama", raw=True)), "container")
        hb = mut(lambda g: setattr(g.tensor("output_norm.weight"), "name", b"@")).header_bytes()
        add(f"tensor_name_len_{n}", hb.replace(enc_str(b"@"), u64(n) + b"@") + b"\0" * 64 + base.data, "container")
    # one token string inside the vocab array claims a huge length
    def long_token(g, n):
        et, toks = g.get("tokenizer.ggml.tokens")
        payload = u32(STRING) + u64(len(toks)) + b"".join(enc_str(t) for t in toks[:100]) + u64(n) + toks[100] + \
            b"".join(enc_str(t) for t in toks[101:])
        g.set_kv("tokenizer.ggml.tokens", ARRAY, payload, raw=True)
    for n in (TWO64M1, 1 << 31, 100000):
        add(f"token_string_len_{n}", mut(lambda g: long_token(g, n)), "container")
    add("key_empty", mut(lambda g: g.set_kv("", U32, 1)), "ok")
    add("key_with_nul_and_newline", mut(lambda g: g.set_kv(b"weird\0key\nwith\x1b[31mescapes", U32, 1)), "ok")
    add("string_invalid_utf8_name", mut(lambda g: g.set_kv("general.name", STRING, b"\xff\xfe\xc3(\n\x1b[2J")), "ok")

    # ---- arrays
    for et, n in ((U64, 1 << 62), (U64, 1 << 61), (F32, 1 << 62), (U8, TWO63), (U8, TWO64M1), (U32, 1 << 62),
                  (STRING, 1 << 62), (ARRAY, 1 << 62), (BOOL, TWO64M1)):
        add(f"array_count_{n}_of_type{et}", mut(lambda g: g.set_kv("hostile.array", ARRAY, enc_array_raw(et, n, b"\0" * 64), raw=True)), "container")
    add("scores_count_2^62_overflow", mut(lambda g: g.set_kv("tokenizer.ggml.scores", ARRAY, enc_array_raw(F32, 1 << 62), raw=True)), "container")
    add("tokens_count_2^62", mut(lambda g: g.set_kv("tokenizer.ggml.tokens", ARRAY, enc_array_raw(STRING, 1 << 62, enc_str("a")), raw=True)), "container")
    for depth in (2, 8, 9, 1000, 200000):
        lvl = "valid" if depth <= 8 else "container"
        add(f"nested_array_depth_{depth}", mut(lambda g: g.set_kv("hostile.nested", ARRAY, nested_array(depth), raw=True)), lvl)
    add("nested_array_wide_2^40_empty", mut(lambda g: g.set_kv("hostile.nested", ARRAY, enc_array_raw(ARRAY, 1 << 40, enc_array_raw(U8, 0) * 4), raw=True)), "container")
    add("array_of_empty_arrays_ok", mut(lambda g: g.set_kv("hostile.nested", ARRAY, enc_array_raw(ARRAY, 3, enc_array_raw(U8, 0) * 3), raw=True)), "valid")
    add("array_elem_type_unknown_13", mut(lambda g: g.set_kv("hostile.array", ARRAY, enc_array_raw(13, 1, b"\0" * 8), raw=True)), "container")
    add("array_elem_type_unknown_ffffffff", mut(lambda g: g.set_kv("hostile.array", ARRAY, enc_array_raw(0xFFFFFFFF, 1, b"\0" * 8), raw=True)), "container")
    add("nested_array_elem_type_unknown", mut(lambda g: g.set_kv("hostile.array", ARRAY, enc_array_raw(ARRAY, 1, enc_array_raw(99, 1, b"\0" * 8)), raw=True)), "container")

    # ---- value types
    for t in (13, 99, 0xFFFFFFFF):
        add(f"kv_type_unknown_{t}", mut(lambda g: g.set_kv("hostile.value", t, b"\0" * 16, raw=True)), "container")
    add("kv_type_unknown_on_first_kv", patch(32 + struct.unpack_from("<Q", raw, 24)[0], u32(77)), "container")
    add("bool_value_2", mut(lambda g: g.set_kv("hostile.bool", BOOL, b"\x02", raw=True)), "ok")

    # ---- tensor infos
    def set_tensor(tname, **kw):
        def f(g):
            t = g.tensor(tname)
            for k, v in kw.items():
                setattr(t, k, v)
        return mut(f)

    add("n_dims_0", set_tensor("blk.0.attn_norm.weight", ne=[], n_dims=0), "container")
    add("n_dims_5", set_tensor("blk.0.attn_q.weight", ne=[64, 64, 1, 1, 1]), "container")
    add("n_dims_ffffffff", set_tensor("blk.0.attn_q.weight", ne=[64, 64], n_dims=0xFFFFFFFF), "container")
    add("ne_zero", set_tensor("blk.0.attn_q.weight", ne=[0, 64]), "container")
    add("ne_negative", set_tensor("blk.0.attn_q.weight", ne=[TWO64M1, 64]), "container")
    add("ne_negative_both", set_tensor("blk.0.attn_q.weight", ne=[TWO64M1, TWO64M1]), "container")
    add("ne_product_overflow_2^32x2^32", set_tensor("blk.0.attn_q.weight", ne=[1 << 32, 1 << 32]), "container")
    add("ne_product_overflow_2^62x4", set_tensor("blk.0.attn_q.weight", ne=[1 << 62, 4]), "container")
    add("ne_product_wraps_to_4096", set_tensor("blk.0.attn_q.weight", ne=[64, 64, 1 << 32, 1 << 32]), "container")
    add("ne_product_huge_4d", set_tensor("blk.0.attn_q.weight", ne=[1 << 16, 1 << 16, 1 << 16, 1 << 16]), "container")
    for t in (99, 40, 4, 3, 0xFFFFFFFF):
        add(f"ggml_type_{t}", set_tensor("blk.0.attn_q.weight", type=t), "container")
    add("q8_0_row_not_multiple_of_block", set_tensor("blk.0.ffn_down.weight", type=8), "container")  # 172 % 32
    add("f16_type_on_f32_data", set_tensor("blk.0.attn_q.weight", type=GGML_F16), "ok")  # reinterpreted, valid
    last = base.tensors[-1]
    data_len = len(base.data)
    add("offset_past_end", set_tensor(last.name, offset=(data_len + 31) // 32 * 32), "container")
    add("offset_2^64-32_wraps", set_tensor(last.name, offset=TWO64M1 - 31), "container")
    add("offset_2^63", set_tensor(last.name, offset=TWO63), "container")
    add("offset_end_plus_1_block", set_tensor(last.name, offset=last.offset + 32), "container")
    add("offset_misaligned", set_tensor("blk.0.attn_q.weight", offset=base.tensor("blk.0.attn_q.weight").offset + 4), "container")
    add("tensors_overlap", set_tensor("blk.0.attn_k.weight", offset=base.tensor("blk.0.attn_q.weight").offset), "container")
    add("tensors_overlap_partially", set_tensor("blk.0.attn_k.weight", offset=base.tensor("blk.0.attn_q.weight").offset + 4096), "container")
    add("duplicate_tensor_name", set_tensor("blk.0.attn_k.weight", name=b"blk.0.attn_q.weight"), "container")
    add("tensor_name_empty", set_tensor("blk.0.attn_k.weight", name=b""), "model")

    # ---- shapes that contradict the hyperparameters (valid container)
    add("attn_q_wrong_shape", set_tensor("blk.0.attn_q.weight", ne=[64, 32]), "model")
    add("attn_q_transposed_ffn_down", set_tensor("blk.0.ffn_down.weight", ne=[64, 172]), "model")
    add("attn_k_wrong_shape", set_tensor("blk.3.attn_k.weight", ne=[32, 64]), "model")
    add("token_embd_fewer_rows", set_tensor("token_embd.weight", ne=[64, 256]), "model")
    add("token_embd_3d", set_tensor("token_embd.weight", ne=[64, 256, 2]), "model")
    add("output_norm_short", set_tensor("output_norm.weight", ne=[32]), "model")
    add("output_wrong_shape", set_tensor("output.weight", ne=[32, 1024]), "model")
    add("attn_norm_2d", set_tensor("blk.1.attn_norm.weight", ne=[8, 8]), "model")

    # ---- missing tensors / keys
    for name in ("blk.2.ffn_up.weight", "token_embd.weight", "output_norm.weight", "blk.4.attn_v.weight"):
        add(f"missing_tensor_{name}", mut(lambda g: g.del_tensor(name)), "model")
    add("missing_output_weight_is_tied_ok", mut(lambda g: g.del_tensor("output.weight")), "valid")
    for key in ("llama.block_count", "llama.embedding_length", "llama.attention.head_count", "general.architecture"):
        add(f"missing_key_{key}", mut(lambda g: g.del_kv(key)), "model")
    add("missing_key_head_count_kv_contradicts_k", mut(lambda g: g.del_kv("llama.attention.head_count_kv")), "model")
    for key in ("llama.feed_forward_length", "llama.context_length", "llama.attention.layer_norm_rms_epsilon",
                "llama.rope.dimension_count", "general.name"):
        add(f"missing_key_{key}_ok", mut(lambda g: g.del_kv(key)), "ok")
    add("missing_key_tokenizer_tokens", mut(lambda g: g.del_kv("tokenizer.ggml.tokens")), "vocab")
    add("missing_key_tokenizer_model", mut(lambda g: g.del_kv("tokenizer.ggml.model")), "ok")

    # ---- hyperparameters
    def hp(key, t, v, level):
        add(f"{key.split('.', 1)[1]}_{v if not isinstance(v, float) or math.isfinite(v) else repr(v)}_{t}", mut(lambda g: g.set_kv(key, t, v)), level)

    for v in (0, 4, 6, 1000, 0x7FFFFFFF, 0xFFFFFFFF):
        hp("llama.block_count", U32, v, "model")  # 4: blk.4's tensors would be left out
    hp("llama.block_count", I32, -1, "model")
    hp("llama.block_count", U64, 1 << 40, "model")
    hp("llama.block_count", F32, 5.0, "model")
    add("block_count_string", mut(lambda g: g.set_kv("llama.block_count", STRING, "5")), "model")
    for v in (0, 32, 65, 1 << 31, 0xFFFFFFFF):
        hp("llama.embedding_length", U32, v, "model")
    for v in (0, 7, 3, 128, 0xFFFFFFFF):
        hp("llama.attention.head_count", U32, v, "model")
    for v in (0, 3, 16, 0xFFFFFFFF):
        hp("llama.attention.head_count_kv", U32, v, "model")
    hp("llama.attention.head_count_kv", U32, 8, "model")  # divides, but contradicts attn_k's shape
    for v in (0, 100, 0xFFFFFFFF):
        hp("llama.feed_forward_length", U32, v, "model")
    hp("llama.context_length", U32, 0, "ok")
    hp("llama.context_length", U32, 0xFFFFFFFF, "ok")
    for v in (0, 9, 1000, 0xFFFFFFFF):
        hp("llama.rope.dimension_count", U32, v, "model" if v else "ok")
    for v in (float("nan"), -1.0, 0.0, float("inf")):
        hp("llama.attention.layer_norm_rms_epsilon", F32, v, "ok")
    for v in (0.0, float("nan"), -10000.0):
        hp("llama.rope.freq_base", F32, v, "ok")
    hp("llama.rope.freq_base", STRING, "x", "model")
    add("architecture_unknown", mut(lambda g: g.set_kv("general.architecture", STRING, "gpt9")), "model")
    add("architecture_wrong_type", mut(lambda g: g.set_kv("general.architecture", U32, 1)), "model")

    # ---- alignment
    for v in (0, 3, 48, 1 << 63):
        add(f"alignment_{v}", mut(lambda g: (g.set_kv("general.alignment", U64 if v > 0xFFFFFFFF else U32, v), setattr(g, "align", 32))), "container")
    add("alignment_string", mut(lambda g: (g.set_kv("general.alignment", STRING, "32"), setattr(g, "align", 32))), "container")
    add("alignment_i32_negative", mut(lambda g: (g.set_kv("general.alignment", I32, -32), setattr(g, "align", 32))), "container")
    add("alignment_64_ok", mut(lambda g: g.set_kv("general.alignment", U32, 64)), "valid")
    def align_lie(g):
        # general.alignment says 64 but the data section starts at a multiple of 32 that is not one of 64
        g.set_kv("general.alignment", U32, 64)
        g.align = 32
        pad = 0
        while (len(g.header_bytes()) + 31) // 32 * 32 % 64 == 0:
            pad += 8
            g.set_kv("general.pad", STRING, "x" * pad)  # moves the header end until the two disagree
    add("alignment_64_but_data_at_32", mut(align_lie), "container")

    # ---- duplicates
    add("duplicate_key_same_value", mut(lambda g: g.kvs.append(KV("llama.block_count", U32, u32(5)))), "container")
    add("duplicate_key_other_value", mut(lambda g: g.kvs.append(KV("llama.block_count", U32, u32(1000)))), "container")
    add("duplicate_key_other_type", mut(lambda g: g.kvs.insert(0, KV("general.architecture", U32, u32(1)))), "container")

    # ---- vocabulary
    et, toks = base.get("tokenizer.ggml.tokens")
    _, scores = base.get("tokenizer.ggml.scores")
    _, ttypes = base.get("tokenizer.ggml.token_type")

    def vocab(n_tok, n_sc, n_ty):
        def f(g):
            g.set_kv("tokenizer.ggml.tokens", ARRAY, (STRING, toks[:n_tok]))
            g.set_kv("tokenizer.ggml.scores", ARRAY, (F32, scores[:n_sc]))
            g.set_kv("tokenizer.ggml.token_type", ARRAY, (I32, ttypes[:n_ty]))
        return mut(f)

    add("vocab_shorter_than_embedding_500", vocab(500, 500, 500), "vocab_model")
    add("vocab_3_tokens", vocab(3, 3, 3), "vocab_model")
    add("vocab_empty", vocab(0, 0, 0), "vocab")
    add("scores_shorter_than_tokens", vocab(512, 100, 512), "vocab")
    add("token_type_shorter_than_tokens", vocab(512, 512, 100), "vocab")
    add("scores_empty", vocab(512, 0, 512), "vocab")
    add("tokens_wrong_elem_type", mut(lambda g: g.set_kv("tokenizer.ggml.tokens", ARRAY, (U32, list(range(512))))), "vocab")
    add("tokens_not_array", mut(lambda g: g.set_kv("tokenizer.ggml.tokens", STRING, "abc")), "vocab")
    add("scores_wrong_elem_type", mut(lambda g: g.set_kv("tokenizer.ggml.scores", ARRAY, (STRING, [b"x"] * 512))), "vocab")
    add("scores_nan", mut(lambda g: g.set_kv("tokenizer.ggml.scores", ARRAY, (F32, [float("nan")] * 512))), "ok")
    add("token_type_out_of_range", mut(lambda g: g.set_kv("tokenizer.ggml.token_type", ARRAY, (I32, [99] * 512))), "ok")
    add("tokens_all_empty_strings", mut(lambda g: g.set_kv("tokenizer.ggml.tokens", ARRAY, (STRING, [b""] * 512))), "ok")
    add("tokens_invalid_utf8", mut(lambda g: g.set_kv("tokenizer.ggml.tokens", ARRAY, (STRING, [b"\xff" + bytes([i % 256]) for i in range(512)]))), "ok")
    add("tokens_duplicate_strings", mut(lambda g: g.set_kv("tokenizer.ggml.tokens", ARRAY, (STRING, [b"a"] * 512))), "ok")
    add("token_byte_fallback_bad_hex", mut(lambda g: g.set_kv("tokenizer.ggml.tokens", ARRAY, (STRING, toks[:3] + [b"<0xZZ>"] * 256 + toks[259:]))), "ok")
    for key, v, level in (("bos", 512, "vocab"), ("bos", 0x7FFFFFFF, "vocab"), ("eos", 600, "vocab"),
                          ("bos", 0xFFFFFFFF, "ok"), ("unknown", 10000, "ok"), ("padding", 512, "ok")):
        add(f"{key}_id_{v}", mut(lambda g: g.set_kv(f"tokenizer.ggml.{key}_token_id", U32, v)), level)
    add("bos_id_i32_negative", mut(lambda g: g.set_kv("tokenizer.ggml.bos_token_id", I32, -5)), "ok")  # negative: no BOS
    add("bos_id_string", mut(lambda g: g.set_kv("tokenizer.ggml.bos_token_id", STRING, "1")), "vocab")
    add("tokenizer_model_unknown", mut(lambda g: g.set_kv("tokenizer.ggml.model", STRING, "bert")), "vocab")
    add("tokenizer_model_gpt2_without_merges", mut(lambda g: g.set_kv("tokenizer.ggml.model", STRING, "gpt2")), "vocab")
    add("tokenizer_gpt2_merges_garbage", mut(lambda g: (g.set_kv("tokenizer.ggml.model", STRING, "gpt2"),
                                                         g.set_kv("tokenizer.ggml.merges", ARRAY, (STRING, [b"nospace", b"", b" ", b"a b c", b"\xff \xfe", b"zz qq"]))),
        ), "ok")
    add("tokenizer_add_bos_wrong_type", mut(lambda g: g.set_kv("tokenizer.ggml.add_bos_token", STRING, "yes")), "ok")

    # ---- weights that are valid bytes but poison the arithmetic (NaN / Inf logits reach the sampler)
    def poison(tname, value, count=None):
        def f(g):
            t = g.tensor(tname)
            n = t.nbytes() // 4 if count is None else count
            d = bytearray(g.data)
            d[t.offset:t.offset + 4 * n] = struct.pack("<f", value) * n
            g.data = bytes(d)
        return mut(f)
    add("weights_nan_output_norm", poison("output_norm.weight", float("nan")), "ok")
    add("weights_inf_token_embd", poison("token_embd.weight", float("inf")), "ok")
    add("weights_nan_one_output_row", poison("output.weight", float("nan"), 64), "ok")
    add("weights_huge_attn_q", poison("blk.0.attn_q.weight", 3e38), "ok")
    add("weights_denormal_ffn", poison("blk.2.ffn_up.weight", 1e-42), "ok")

    # ---- error messages that quote the file's own bytes must not carry control characters to the
    # terminal (escape sequences, bell, carriage return)
    evil = b"evil\x1b[2J\x1b]0;pwned\x07\rkey\x01"
    add("evil_key_name_unknown_type", mut(lambda g: g.set_kv(evil, 99, b"\0" * 8, raw=True)), "container")
    add("evil_tensor_name_bad_dims", set_tensor("blk.0.attn_q.weight", name=evil, ne=[64, 64, 1, 1, 1]), "container")
    add("evil_tensor_name_duplicate", mut(lambda g: (setattr(g.tensor("blk.0.attn_q.weight"), "name", evil),
                                                     setattr(g.tensor("blk.0.attn_k.weight"), "name", evil))), "container")
    add("evil_architecture", mut(lambda g: g.set_kv("general.architecture", STRING, evil)), "model")
    add("evil_tokenizer_model", mut(lambda g: g.set_kv("tokenizer.ggml.model", STRING, evil)), "vocab")

    # ---- lots of small records (quadratic duplicate checks)
    def many_kvs(g, n):
        for i in range(n):
            g.kvs.append(KV(b"k%07d" % i, U8, b"\1"))
    add("many_kvs_100k", mut(lambda g: many_kvs(g, 100000)), "ok")

    def many_tensors(g, n):
        off = (len(g.data) + 31) // 32 * 32
        g.data = g.data + b"\0" * (off - len(g.data)) + b"\0" * (32 * n)
        for i in range(n):
            g.tensors.append(Tensor(b"x.%07d" % i, [1], GGML_F32, off + 32 * i))
    add("many_tensors_50k", mut(lambda g: many_tensors(g, 50000)), "model")  # tensors llamac would leave out

    add("rope_freqs_tensor_wrong_size", mut(lambda g: (g.set_kv("llama.rope.dimension_count", U32, 8),
                                                        g.tensors.append(Tensor("rope_freqs.weight", [3], GGML_F32, (len(g.data) + 31) // 32 * 32)),
                                                        setattr(g, "data", g.data + b"\0" * ((-len(g.data)) % 32) + b"\0" * 32))), "model")
    return cases


def add_tensor(g, name, ne, value=0.0):
    """Appends an F32 tensor of shape ne (innermost first) filled with value."""
    off = (len(g.data) + 31) // 32 * 32
    g.data = g.data + b"\0" * (off - len(g.data)) + struct.pack("<f", value) * math.prod(ne)
    g.tensors.append(Tensor(name, ne, GGML_F32, off))


def unsupported_gguf_cases(path):
    """[(name, payload, level, word)]: variants of a real Llama GGUF (stories260K.gguf: head size 8) that
    ask for what llamac's forward pass does not compute, as llama.cpp's Llama reads them: experts, other
    head sizes, rope scaling, biases. "model" cases must be refused with an error containing word (the
    thing refused); "valid" ones hold the neutral value and must load."""
    base = Gguf.load(path)
    cases = []

    def add(name, fn, level, word=""):
        g = base.copy()
        fn(g)
        cases.append((name, g, level, word))

    add("expert_count_8", lambda g: (g.set_kv("llama.expert_count", U32, 8), g.set_kv("llama.expert_used_count", U32, 2)),
        "model", "expert")
    add("expert_used_count_2", lambda g: g.set_kv("llama.expert_used_count", U32, 2), "model", "expert")
    add("expert_count_0_ok", lambda g: (g.set_kv("llama.expert_count", U32, 0), g.set_kv("llama.expert_used_count", U32, 0)), "valid")
    add("key_length_16", lambda g: g.set_kv("llama.attention.key_length", U32, 16), "model", "key_length")
    add("value_length_4", lambda g: g.set_kv("llama.attention.value_length", U32, 4), "model", "value_length")
    add("key_value_length_8_ok", lambda g: (g.set_kv("llama.attention.key_length", U32, 8),
                                            g.set_kv("llama.attention.value_length", U32, 8)), "valid")
    add("rope_scaling_yarn", lambda g: (g.set_kv("llama.rope.scaling.type", STRING, "yarn"),
                                        g.set_kv("llama.rope.scaling.factor", F32, 4.0)), "model", "yarn")
    add("rope_scaling_longrope", lambda g: g.set_kv("llama.rope.scaling.type", STRING, "longrope"), "model", "longrope")
    add("rope_scaling_linear_4", lambda g: (g.set_kv("llama.rope.scaling.type", STRING, "linear"),
                                            g.set_kv("llama.rope.scaling.factor", F32, 4.0)), "model", "rope.scaling.factor")
    add("rope_scaling_factor_2_no_type", lambda g: g.set_kv("llama.rope.scaling.factor", F32, 2.0), "model", "rope.scaling.factor")
    add("rope_scale_linear_2", lambda g: g.set_kv("llama.rope.scale_linear", F32, 2.0), "model", "rope.scale_linear")
    add("rope_scaling_factor_nan", lambda g: g.set_kv("llama.rope.scaling.factor", F32, float("nan")), "model", "rope.scaling.factor")
    add("rope_scaling_attn_factor_2", lambda g: g.set_kv("llama.rope.scaling.attn_factor", F32, 2.0), "model", "attn_factor")
    add("rope_scaling_none_ok", lambda g: g.set_kv("llama.rope.scaling.type", STRING, "none"), "valid")
    add("rope_scaling_linear_1_ok", lambda g: (g.set_kv("llama.rope.scaling.type", STRING, "linear"),
                                               g.set_kv("llama.rope.scaling.factor", F32, 1.0)), "valid")
    add("rope_scaling_type_not_string", lambda g: g.set_kv("llama.rope.scaling.type", U32, 2), "model", "rope.scaling.type")
    add("attn_q_bias", lambda g: add_tensor(g, "blk.0.attn_q.bias", [64]), "model", "bias")
    add("ffn_down_bias", lambda g: add_tensor(g, "blk.4.ffn_down.bias", [64]), "model", "bias")
    add("ffn_gate_inp_experts", lambda g: add_tensor(g, "blk.0.ffn_gate_inp.weight", [64, 8]), "model", "experts")
    add("ffn_up_exps", lambda g: add_tensor(g, "blk.2.ffn_up_exps.weight", [64, 172, 8]), "model", "experts")
    add("layer_past_block_count", lambda g: add_tensor(g, "blk.5.attn_norm.weight", [64], 1.0), "model", "blk.5.attn_norm")
    add("attn_rot_embd", lambda g: add_tensor(g, "blk.0.attn_rot_embd", [4]), "model", "attn_rot_embd")
    add("rope_freqs_ok", lambda g: add_tensor(g, "rope_freqs.weight", [4], 1.0), "valid")
    return cases


# ---------------------------------------------------------------------------------------------------
# llama2.c checkpoint (.bin) and tokenizer.bin


def llama2c_expected_size(dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len):
    """Bytes of a legacy llama2.c checkpoint (with the freq_cis tables), as run.c reads it."""
    head = dim // n_heads
    kv_dim = dim * n_kv_heads // n_heads
    n = (abs(vocab) * dim + n_layers * dim * 2 + n_layers * dim * (dim + 2 * kv_dim + dim)
         + n_layers * 3 * dim * hidden + dim + seq_len * head)
    if vocab < 0:
        n += abs(vocab) * dim
    return 28 + 4 * n


def llama2c_cases(path):
    raw = open(path, "rb").read()
    hdr = list(struct.unpack_from("<7i", raw, 0))
    body = raw[28:]
    cases = []
    names = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")

    def with_hdr(**kw):
        h = list(hdr)
        for k, v in kw.items():
            h[names.index(k)] = v
        return struct.pack("<7i", *h) + body

    cases.append(("control_unmodified", raw, "valid"))
    for p in (0, 1, 4, 20, 27, 28, 32):
        cases.append((f"truncated_at_{p}", raw[:p], "container"))
    for i in range(1, 20):
        p = 28 + (len(raw) - 28) * i // 20
        cases.append((f"truncated_at_{p}", raw[:p], "container"))
    cases.append(("truncated_minus_1", raw[:-1], "container"))
    cases.append(("truncated_minus_4", raw[:-4], "container"))
    cases.append(("extra_4_bytes", raw + b"\0" * 4, "container"))
    cases.append(("extra_3_bytes", raw + b"\0" * 3, "container"))
    big = (1 << 31) - 1
    for k, vals in (("dim", (0, -64, 1, 63, 65, 128, big, -(1 << 31), 46341)),
                    ("hidden_dim", (0, -172, 171, big)),
                    ("n_layers", (0, -1, 4, 6, 1000000, big)),
                    ("n_heads", (0, -8, 7, 3, 16, 128, big)),
                    ("n_kv_heads", (0, -4, 3, 16, 8, big)),
                    ("vocab_size", (0, 1, 511, 513, -512, big, -(1 << 31), -1)),
                    ("seq_len", (0, -1, 1, 511, big, -(1 << 31)))):
        for v in vals:
            cases.append((f"{k}_{v}", with_hdr(**{k: v}), "container"))
    cases.append(("all_max", struct.pack("<7i", *([big] * 7)) + body, "container"))
    cases.append(("all_zero", struct.pack("<7i", *([0] * 7)) + body, "container"))
    cases.append(("all_minus1", struct.pack("<7i", *([-1] * 7)) + body, "container"))
    cases.append(("dim_65536_hidden_65536_size_overflow", with_hdr(dim=65536, hidden_dim=65536, n_layers=65536), "container"))
    cases.append(("gguf_magic_as_bin", b"GGUF" + raw[4:], "container"))
    return cases


def tok_parse(raw):
    """-> (max_token_length, [(score, bytes)], [offset where each token record starts], end)"""
    r = Reader(raw)
    maxlen = r.fmt("<i")
    toks, offs = [], []
    while r.p < len(raw):
        offs.append(r.p)
        score = r.fmt("<f")
        n = r.fmt("<i")
        toks.append((score, r.take(n)))
    return maxlen, toks, offs


def tok_build(maxlen, toks):
    return i32(maxlen) + b"".join(struct.pack("<fi", s, len(b)) + b for s, b in toks)


def tok_cases(path):
    """tokenizer.bin variants. Levels: "container" (unreadable: every use fails), "vocab_model" (readable,
    but with fewer tokens than the model's vocabulary: standalone use may work, generate must fail), "ok"."""
    raw = open(path, "rb").read()
    maxlen, toks, offs = tok_parse(raw)
    cases = [("control_unmodified", raw, "valid")]
    for p in (0, 1, 3, 4, 6, 8, 9, 11, 12):  # 4: max_token_length alone, zero tokens
        cases.append((f"truncated_at_{p}", raw[:p], "vocab_model" if p == 4 else "container"))
    # mid-record truncations (inside the score, the length, the bytes) at several tokens
    for k in (1, 100, 300, 511):
        o = offs[k]
        for d, lvl in ((2, "container"), (6, "container"), (9, "container")):
            if o + d < len(raw):
                # d=9 is inside the bytes only if the token is longer than 1 byte
                L = toks[k][1]
                lvl2 = lvl if (d < 8 or len(L) > 1) else "vocab_model"
                cases.append((f"truncated_token{k}_plus{d}", raw[:o + d], lvl2))
        cases.append((f"truncated_at_token{k}_boundary", raw[:o], "vocab_model"))
    for k, n in ((5, -1), (5, (1 << 31) - 1), (5, -(1 << 31)), (300, 1 << 20), (511, len(raw))):
        o = offs[k] + 4
        b = bytearray(raw)
        b[o:o + 4] = i32(n)
        cases.append((f"token{k}_len_{n}", bytes(b), "container"))
    t2 = list(toks)
    t2[7] = (t2[7][0], b"")
    cases.append(("token_empty_string", tok_build(maxlen, t2), "ok"))
    for m in (-1, 0, 1, (1 << 31) - 1):
        cases.append((f"max_token_length_{m}", tok_build(m, toks), "ok"))
    cases.append(("scores_nan", tok_build(maxlen, [(float("nan"), b) for _, b in toks]), "ok"))
    cases.append(("tokens_invalid_utf8", tok_build(maxlen, [(s, b"\xff\xfe" + b) for s, b in toks]), "ok"))
    cases.append(("extra_trailing_bytes", raw + b"\1\2\3", "ok"))  # a model's n_vocab may stop the reader before
    cases.append(("extra_token", raw + struct.pack("<fi", 0.0, 1) + b"z", "ok"))
    cases.append(("token_with_nul_byte", tok_build(maxlen, toks[:300] + [(0.0, b"a\0b")] + toks[301:]), "ok"))
    return cases


# ---------------------------------------------------------------------------------------------------
# small valid files (fuzz seeds)


def _rng(seed):
    x = seed & 0xFFFFFFFF or 1
    while True:
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        yield (x / 0xFFFFFFFF - 0.5) * 0.2


def _fp16(x):
    return struct.pack("<e", x)


def quantize(vals, wtype):
    """Row bytes of vals (a multiple of 32 long for the block types) in ggml type wtype."""
    if wtype == GGML_F32:
        return struct.pack(f"<{len(vals)}f", *vals)
    if wtype == GGML_F16:
        return struct.pack(f"<{len(vals)}e", *vals)
    out = bytearray()
    for i in range(0, len(vals), 32):
        x = vals[i:i + 32]
        if wtype == 8:  # Q8_0: d = amax / 127, q = round(x / d)
            amax = max(abs(v) for v in x)
            d = amax / 127
            out += _fp16(d) + bytes((int(round(v / d)) if d else 0) & 0xFF for v in x)
        elif wtype == 2:  # Q4_0: d = max / -8, q = x / d + 8 (low nibbles: 0..15, high: 16..31)
            m = max(x, key=abs)
            d = m / -8
            q = [min(15, int(v / d + 8.5)) if d else 8 for v in x]
            out += _fp16(d) + bytes(q[j] | (q[j + 16] << 4) for j in range(16))
        else:
            raise ValueError(wtype)
    return bytes(out)


def tiny_model(vocab_from, dim=8, hidden=16, n_layers=1, n_heads=2, n_kv_heads=1, n_vocab=None,
               wtype=GGML_F32, seed=1, tied=True):
    """A small valid Llama model as a Gguf object, its vocabulary taken from another GGUF (e.g.
    stories260K.gguf) and cut to n_vocab tokens. wtype: 0 F32, 1 F16, 8 Q8_0, 2 Q4_0 (block types
    need dim and hidden multiples of 32)."""
    src = Gguf.load(vocab_from)
    _, toks = src.get("tokenizer.ggml.tokens")
    _, scores = src.get("tokenizer.ggml.scores")
    _, ttypes = src.get("tokenizer.ggml.token_type")
    n_vocab = n_vocab or len(toks)
    g = Gguf()
    g.set_kv("general.architecture", STRING, "llama")
    g.set_kv("general.name", STRING, "tiny")
    g.set_kv("llama.context_length", U32, 64)
    g.set_kv("llama.embedding_length", U32, dim)
    g.set_kv("llama.feed_forward_length", U32, hidden)
    g.set_kv("llama.block_count", U32, n_layers)
    g.set_kv("llama.attention.head_count", U32, n_heads)
    g.set_kv("llama.attention.head_count_kv", U32, n_kv_heads)
    g.set_kv("llama.rope.dimension_count", U32, dim // n_heads)
    g.set_kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5)
    g.set_kv("tokenizer.ggml.model", STRING, "llama")
    g.set_kv("tokenizer.ggml.tokens", ARRAY, (STRING, toks[:n_vocab]))
    g.set_kv("tokenizer.ggml.scores", ARRAY, (F32, scores[:n_vocab]))
    g.set_kv("tokenizer.ggml.token_type", ARRAY, (I32, ttypes[:n_vocab]))
    g.set_kv("tokenizer.ggml.bos_token_id", U32, 1)
    g.set_kv("tokenizer.ggml.eos_token_id", U32, 2)
    g.set_kv("tokenizer.ggml.unknown_token_id", U32, 0)
    kv_dim = dim * n_kv_heads // n_heads
    shapes = [("token_embd.weight", [dim, n_vocab]), ("output_norm.weight", [dim])]
    if not tied:
        shapes.append(("output.weight", [dim, n_vocab]))
    for l in range(n_layers):
        p = f"blk.{l}."
        shapes += [(p + "attn_norm.weight", [dim]), (p + "attn_q.weight", [dim, dim]), (p + "attn_k.weight", [dim, kv_dim]),
                   (p + "attn_v.weight", [dim, kv_dim]), (p + "attn_output.weight", [dim, dim]),
                   (p + "ffn_norm.weight", [dim]), (p + "ffn_gate.weight", [dim, hidden]),
                   (p + "ffn_down.weight", [hidden, dim]), (p + "ffn_up.weight", [dim, hidden])]
    rng = _rng(seed)
    data = bytearray()
    for name, ne in shapes:
        n = math.prod(ne)
        is_norm = len(ne) == 1
        t = GGML_F32 if is_norm or ne[0] % 32 and wtype in (2, 8) else wtype
        vals = [1.0] * n if is_norm else [next(rng) for _ in range(n)]
        data += b"\0" * ((-len(data)) % 32)
        g.tensors.append(Tensor(name, ne, t, len(data)))
        data += quantize(vals, t)
    g.data = bytes(data)
    return g


def tiny_model_gguf(vocab_from, **kw):
    return tiny_model(vocab_from, **kw).to_bytes()


def _gpt2_byte_chars():
    """GPT-2's byte -> printable character table (bytes_to_unicode)."""
    bs = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_gpt2_vocab():
    """A small byte-level BPE (Llama 3 style) vocabulary-only GGUF: 256 byte tokens, a few merges, and
    the Llama 3 special tokens."""
    bc = _gpt2_byte_chars()
    toks = [bc[b] for b in range(256)]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "o n", "Ġ s", "e r", "Ġa n", "Ġan d", "1 2", "12 3"]
    for m in merges:
        a, b = m.split(" ")
        toks.append(a + b)
    types = [1] * len(toks)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    bos = len(toks)
    toks += specials
    types += [3] * len(specials)
    g = Gguf()
    g.set_kv("general.architecture", STRING, "llama")
    g.set_kv("tokenizer.ggml.model", STRING, "gpt2")
    g.set_kv("tokenizer.ggml.pre", STRING, "llama-bpe")
    g.set_kv("tokenizer.ggml.tokens", ARRAY, (STRING, [t.encode() for t in toks]))
    g.set_kv("tokenizer.ggml.token_type", ARRAY, (I32, types))
    g.set_kv("tokenizer.ggml.merges", ARRAY, (STRING, [m.encode() for m in merges]))
    g.set_kv("tokenizer.ggml.bos_token_id", U32, bos)
    g.set_kv("tokenizer.ggml.eos_token_id", U32, bos + 4)
    return g


def tiny_llama2c(dim=8, hidden=16, n_layers=1, n_heads=2, n_kv_heads=1, vocab=32, seq_len=16, seed=2):
    """A small valid legacy llama2.c checkpoint (shared classifier when vocab > 0)."""
    n = (llama2c_expected_size(dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len) - 28) // 4
    rng = _rng(seed)
    return struct.pack("<7i", dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len) + \
        struct.pack(f"<{n}f", *[next(rng) for _ in range(n)])


def tiny_hf_json():
    """A small Hugging Face tokenizer.json (BPE, byte-level)."""
    import json
    bc = _gpt2_byte_chars()
    vocab = {bc[b]: b for b in range(256)}
    merges = ["Ġ t", "h e", "Ġt he"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    added = [{"id": len(vocab), "content": "<|begin_of_text|>", "special": True},
             {"id": len(vocab) + 1, "content": "<|eot_id|>", "special": True}]
    regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    return json.dumps({"version": "1.0", "added_tokens": added, "normalizer": None, "pre_tokenizer": pre,
                       "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                       "model": {"type": "BPE", "ignore_merges": True, "vocab": vocab, "merges": merges}},
                      ensure_ascii=False).encode()


def quantized_cases(vocab_from):
    """[(name, payload, level)]: small Q8_0 / Q4_0 models whose block scales are NaN or Inf — valid
    files whose arithmetic (dequantized weights, quantized activations) meets non-finite numbers."""
    cases = []
    for wtype, tname in ((8, "q8_0"), (2, "q4_0")):
        g = tiny_model(vocab_from, dim=32, hidden=32, n_heads=2, n_kv_heads=2, n_vocab=64, wtype=wtype)
        cases.append((f"{tname}_control", g.to_bytes(), "valid"))
        bsize = 34 if wtype == 8 else 18
        for tensor, val, label in (("token_embd.weight", 0x7E00, "nan"), ("token_embd.weight", 0x7C00, "inf"),
                                   ("blk.0.attn_q.weight", 0x7E00, "nan"), ("blk.0.ffn_down.weight", 0xFC00, "neg_inf")):
            h = g.copy()
            t = h.tensor(tensor)
            d = bytearray(h.data)
            for off in range(t.offset, t.offset + t.nbytes(), bsize):
                d[off:off + 2] = struct.pack("<H", val)
            h.data = bytes(d)
            cases.append((f"{tname}_{label}_scales_{tensor.split('.')[-2]}", h.to_bytes(), "ok"))
    return cases


def hf_json_cases():
    """[(name, {file name: bytes}, level)]: tokenizer.json folders (optionally with tokenizer_config.json)."""
    import json
    good = tiny_hf_json()
    cases = [("control", {"tokenizer.json": good}, "valid")]

    def mut(fn, level, name, config=None):
        j = json.loads(good)
        fn(j)
        files = {"tokenizer.json": json.dumps(j, ensure_ascii=False).encode("utf-8", "surrogatepass")}
        if config is not None:
            files["tokenizer_config.json"] = config
        cases.append((name, files, level))

    for p in (0, 1, 10, len(good) // 2, len(good) - 1):
        cases.append((f"truncated_at_{p}", {"tokenizer.json": good[:p]}, "container"))
    for name, text in (("not_json", b"{this is not json"), ("array_top", b"[1,2,3]"), ("empty_object", b"{}"),
                       ("nul_bytes", b"{\0\0\0}"), ("deep_nesting", b'{"model":' + b"[" * 100000 + b"]" * 100000 + b"}"),
                       ("huge_number", b'{"model":{"type":"BPE","vocab":{"a":1e999},"merges":[]}}')):
        cases.append((name, {"tokenizer.json": text}, "container"))
    mut(lambda j: j["model"].__setitem__("type", "WordPiece"), "container", "model_type_wordpiece")
    mut(lambda j: j["model"].pop("type"), "container", "model_type_missing")
    mut(lambda j: j.__setitem__("model", "BPE"), "container", "model_not_object")
    mut(lambda j: j["model"].__setitem__("vocab", [1, 2]), "container", "vocab_not_object")
    mut(lambda j: j["model"].__setitem__("vocab", {}), "container", "vocab_empty")
    mut(lambda j: j["model"]["vocab"].__setitem__("Ġt", "12"), "container", "vocab_id_string")
    mut(lambda j: j["model"]["vocab"].__setitem__("Ġt", 1.5), "container", "vocab_id_fraction")
    mut(lambda j: j["model"]["vocab"].__setitem__("Ġt", -1), "container", "vocab_id_negative")
    mut(lambda j: j["model"]["vocab"].__setitem__("Ġt", 2147483647), "container", "vocab_id_int_max")
    mut(lambda j: j["model"]["vocab"].__setitem__("Ġt", 4294967296), "container", "vocab_id_2^32")
    mut(lambda j: j["model"]["vocab"].__setitem__("Ġt", 5), "container", "vocab_id_duplicate")
    mut(lambda j: j["model"]["vocab"].__setitem__("Ġt", 300), "ok", "vocab_id_gap")
    mut(lambda j: j["model"]["vocab"].__setitem__("\x1b[2J\x07", "bad"), "container", "vocab_key_escape_codes")
    mut(lambda j: j["model"]["vocab"].__setitem__("a\0b", 400), "ok", "vocab_key_nul")
    mut(lambda j: j["model"]["vocab"].__setitem__("\udcff", 401), "ok", "vocab_key_lone_surrogate")
    mut(lambda j: j["model"].__setitem__("merges", "Ġ t"), "container", "merges_not_array")
    mut(lambda j: j["model"].__setitem__("merges", [1, None, {}]), "container", "merges_not_strings")
    mut(lambda j: j["model"].__setitem__("merges", ["a b c", "nospace", " ", "", "zz qq"]), "ok", "merges_malformed_strings")
    mut(lambda j: j["model"].__setitem__("merges", [["Ġ", "t"], ["h", "e"]]), "valid", "merges_as_pairs")
    mut(lambda j: j["model"].__setitem__("merges", [["Ġ"], ["h", "e", "x"]]), "container", "merges_bad_pairs")
    mut(lambda j: j.__setitem__("added_tokens", {"id": 1}), "container", "added_not_array")
    mut(lambda j: j["added_tokens"].append({"id": 100000000, "content": "<x>"}), "container", "added_id_huge")
    mut(lambda j: j["added_tokens"].append({"id": -3, "content": "<x>"}), "container", "added_id_negative")
    mut(lambda j: j["added_tokens"].append({"id": 5, "content": "<conflict>"}), "container", "added_conflicts_vocab")
    mut(lambda j: j["added_tokens"].append({"id": 270, "content": ""}), "ok", "added_content_empty")
    mut(lambda j: j["added_tokens"].append({"id": 271, "content": 7}), "container", "added_content_not_string")
    mut(lambda j: j.__setitem__("normalizer", {"type": "NFC"}), "container", "normalizer_present")
    mut(lambda j: j["pre_tokenizer"]["pretokenizers"][0]["pattern"].__setitem__("Regex", "(" * 1000), "container", "regex_other")
    mut(lambda j: j.__setitem__("pre_tokenizer", None), "container", "pre_tokenizer_null")
    mut(lambda j: j["model"].__setitem__("byte_fallback", True), "container", "byte_fallback")
    for cname, cfg in (("config_bos_object", b'{"bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>"}'),
                       ("config_bos_missing_token", b'{"bos_token": "<nope>", "eos_token": 12}'),
                       ("config_bos_number", b'{"bos_token": 3}'),
                       ("config_template_list", b'{"chat_template": [{"name": "x"}, {"template": 5}, 7]}'),
                       ("config_template_huge", b'{"chat_template": "' + b"{{ x }}" * 200000 + b'"}')):
        mut(lambda j: None, "ok", cname, config=cfg)
    for cname, cfg in (("config_not_object", b"[]"), ("config_truncated", b'{"bos_token": "<|be'), ("config_empty", b""),
                       ("config_trailing_junk", b'{"bos_token": "<|begin_of_text|>"} x'),
                       ("config_two_objects", b'{"bos_token": "<|begin_of_text|>"}{"bos_token": "<|eot_id|>"}'),
                       ("config_nul", b'{"bos_token": "<|begin_of_text|>"}\0'),
                       ("config_duplicate_key", b'{"bos_token": "<|begin_of_text|>", "bos_token": "<|eot_id|>"}')):
        mut(lambda j: None, "container", cname, config=cfg)
    # exactly one JSON object, every key once (cJSON alone kept the first of two, Python the last)
    for name, text in (("trailing_junk", good + b" junk"), ("two_objects", good + good), ("nul_after", good + b"\0"),
                       ("bom", b"\xef\xbb\xbf" + good),
                       ("duplicate_top_key", good[:-1] + b', "normalizer": {"type": "NFC"}}'),
                       ("duplicate_vocab_key", good.replace(b'"vocab": {', b'"vocab": {"t": 5, ', 1))):
        cases.append((name, {"tokenizer.json": text}, "container"))
    return cases


def tiny_safetensors(tensors):
    """safetensors bytes from {name: (dtype, shape, raw bytes)}."""
    import json
    hdr, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    hdr["__metadata__"] = {"format": "pt"}
    h = json.dumps(hdr).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def torch_pickle(tensors, extra=()):
    """A protocol-2 pickle of a state dict as torch.save writes it, without torch: tensors is
    [(name, storage class, storage key, storage numel, offset, shape)]."""
    def op_str(s):
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE
    def op_int(v):
        return b"J" + struct.pack("<i", v)  # BININT
    def op_tuple(items):
        return b"(" + b"".join(items) + b"t"
    out = b"\x80\x02" + b"ccollections\nOrderedDict\nq\x00)Rq\x01("
    for name, cls, key, numel, offset, shape in tensors:
        stride, acc = [], 1
        for d in reversed(shape):
            stride.insert(0, acc)
            acc *= d
        pid = op_tuple([op_str("storage"), b"ctorch\n" + cls.encode() + b"\n", op_str(key), op_str("cpu"), op_int(numel)])
        args = op_tuple([pid + b"Q", op_int(offset), op_tuple([op_int(x) for x in shape]),
                         op_tuple([op_int(x) for x in stride]), b"\x89", b"ccollections\nOrderedDict\n)R"])
        out += op_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"
    for name, v in extra:
        out += op_str(name) + op_int(v)
    return out + b"u."


def tiny_torch_pth():
    """A small torch.save-style zip: data.pkl plus one stored entry per storage."""
    import io
    import zipfile
    pkl = torch_pickle([("tok_embeddings.weight", "FloatStorage", "0", 8, 0, [2, 4]),
                        ("norm.weight", "BFloat16Storage", "1", 6, 2, [4])], extra=[("step", 3)])
    zb = io.BytesIO()
    with zipfile.ZipFile(zb, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", struct.pack("<8f", *range(8)))
        z.writestr("archive/data/1", b"\x80\x3f" * 6)
        z.writestr("archive/version", b"3\n")
    return pkl, zb.getvalue()


def write_fuzz_seeds(shared, corpus):
    """Seed corpora for fuzz/fuzz_gguf.c and fuzz/fuzz_llama2c.c (every file < 64 KB). For the
    safetensors / zip / pickle targets, tiny_safetensors(), tiny_torch_pth() and torch_pickle() make seeds."""
    import os
    stories = os.path.join(shared, "models", "stories260K")
    sg = os.path.join(stories, "stories260K.gguf")
    out = {}
    g = tiny_model(sg)
    out["gguf/tiny_f32_tied.gguf"] = g.to_bytes()
    out["gguf/tiny_f16_untied_v128.gguf"] = tiny_model_gguf(sg, n_vocab=128, wtype=GGML_F16, tied=False, n_layers=2)
    out["gguf/tiny_q8_0_d32.gguf"] = tiny_model_gguf(sg, dim=32, hidden=64, n_heads=4, n_kv_heads=2, n_vocab=96, wtype=8)
    out["gguf/tiny_q4_0_d32.gguf"] = tiny_model_gguf(sg, dim=32, hidden=32, n_heads=2, n_kv_heads=2, n_vocab=64, wtype=2)
    v = Gguf()
    for kv in Gguf.load(sg).kvs:
        if kv.key.startswith(b"tokenizer."):
            v.kvs.append(kv)
    out["gguf/vocab_spm_stories.gguf"] = v.to_bytes()
    out["gguf/vocab_gpt2_tiny.gguf"] = tiny_gpt2_vocab().to_bytes()
    # a few hostile ones, built on the tiny model
    h = g.copy()
    h.n_kv = 1 << 62
    out["gguf/bad_n_kv_huge.gguf"] = h.to_bytes()
    h = g.copy().set_kv("hostile.nested", ARRAY, nested_array(9), raw=True)
    out["gguf/bad_nested_9.gguf"] = h.to_bytes()
    h = g.copy()
    h.tensor("blk.0.attn_k.weight").offset = h.tensor("blk.0.attn_q.weight").offset
    out["gguf/bad_overlap.gguf"] = h.to_bytes()
    h = g.copy().set_kv("llama.attention.head_count", U32, 3)
    out["gguf/bad_heads_3.gguf"] = h.to_bytes()
    h = g.copy().set_kv("tokenizer.ggml.bos_token_id", U32, 100000)
    out["gguf/bad_bos.gguf"] = h.to_bytes()
    full = g.to_bytes()
    out["gguf/bad_truncated_half.gguf"] = full[:len(full) // 2]
    h = g.copy()
    t = h.tensor("output_norm.weight")
    d = bytearray(h.data)
    d[t.offset:t.offset + 4 * t.ne[0]] = struct.pack("<f", float("nan")) * t.ne[0]
    h.data = bytes(d)
    out["gguf/nan_weights.gguf"] = h.to_bytes()

    out["llama2c/tiny_shared_v32.bin"] = tiny_llama2c()
    out["llama2c/tiny_untied_v32.bin"] = tiny_llama2c(vocab=-32, n_kv_heads=2)
    tok = open(os.path.join(stories, "tok512.bin"), "rb").read()
    maxlen, toks, _ = tok_parse(tok)
    out["llama2c/tok32.bin"] = tok_build(maxlen, toks[:32])
    out["llama2c/tok512.bin"] = tok
    out["llama2c/tokenizer_tiny.json"] = tiny_hf_json()
    out["llama2c/bad_header_heads_7.bin"] = struct.pack("<7i", 8, 16, 1, 7, 1, 32, 16) + tiny_llama2c()[28:]
    out["llama2c/bad_tok_len.bin"] = tok_build(maxlen, toks[:8])[:-3] + i32(1 << 30)

    for name, b in out.items():
        assert len(b) < 64 * 1024, (name, len(b))
        path = os.path.join(corpus, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b)
    return sorted(out)


if __name__ == "__main__":
    import os
    import sys
    shared = os.environ.get("LLAMAC_SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
    if len(sys.argv) == 3 and sys.argv[1] == "seeds":
        for n in write_fuzz_seeds(shared, sys.argv[2]):
            print(n)
        sys.exit(0)
    if len(sys.argv) != 1:
        sys.exit("usage: hostile.py            (count the cases)\n       hostile.py seeds DIR  (write the fuzz seed corpora)")
    m = os.path.join(shared, "models", "stories260K")
    for fn, p in ((gguf_cases, "stories260K.gguf"), (llama2c_cases, "stories260K.bin"), (tok_cases, "tok512.bin")):
        cs = fn(os.path.join(m, p))
        print(f"{p}: {len(cs)} cases", file=sys.stderr)
