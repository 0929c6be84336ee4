"""Minimal, independent GGUF (v2/v3) reader for the llamac test references.

Written from the GGUF specification, not from llamac's C code:

    magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv x  (string key, u32 value_type, value)
    n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
    padding to general.alignment (default 32), then the tensor data blob;
    each tensor's data starts at blob + offset.

Strings are u64 length + bytes (no terminator).  Arrays are u32 element type +
u64 count + elements, and may nest.  ne[0] is the innermost (row) dimension,
so a 2-D tensor with ne = [n_in, n_out] is a matrix of n_out rows of n_in.

Supported tensor types (dequantized to float64):
    F32=0, F16=1, Q4_0=2, Q8_0=8, Q4_K=12, Q6_K=14, BF16=30.

The K-quants (ggml-common.h), superblocks of 256 weights:
    Q4_K (144 bytes): f16 d, f16 dmin, u8 scales[12], u8 qs[128].  8 sub-blocks
      of 32, weight = d * sc[j] * q - dmin * m[j], q a nibble.  (sc, m) are
      6-bit: for j < 4, sc = scales[j] & 63, m = scales[j+4] & 63; for j >= 4,
      sc = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4 and
      m = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.  qs holds 4 runs of 32
      bytes, one per 64 weights: low nibbles the first 32, high nibbles the next.
    Q6_K (210 bytes): u8 ql[128], u8 qh[64], i8 scales[16], f16 d.  16
      sub-blocks of 16, weight = d * scales[j] * (q - 32), q 6-bit.  Per half
      of 128 weights (ql 64 bytes, qh 32 bytes), for l < 32 the weights l,
      l+32, l+64, l+96 have low 4 bits ql[l] & 15, ql[l+32] & 15, ql[l] >> 4,
      ql[l+32] >> 4 and high 2 bits (qh[l] >> 0, 2, 4, 6) & 3.
"""

import mmap
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"

# metadata value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, \
    T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)

_SCALAR = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h",
    T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?",
    T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d",
}
_NP_SCALAR = {
    T_UINT8: "<u1", T_INT8: "<i1", T_UINT16: "<u2", T_INT16: "<i2",
    T_UINT32: "<u4", T_INT32: "<i4", T_FLOAT32: "<f4", T_BOOL: "<u1",
    T_UINT64: "<u8", T_INT64: "<i8", T_FLOAT64: "<f8",
}

# ggml tensor types
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 8, 30
GGML_Q4_K, GGML_Q6_K = 12, 14
TYPE_NAMES = {GGML_F32: "f32", GGML_F16: "f16", GGML_Q4_0: "q4_0",
              GGML_Q8_0: "q8_0", GGML_BF16: "bf16", GGML_Q4_K: "q4_k",
              GGML_Q6_K: "q6_k"}
# (block size in elements, bytes per block)
_BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2),
          GGML_Q8_0: (32, 34), GGML_Q4_0: (32, 18),
          GGML_Q4_K: (256, 144), GGML_Q6_K: (256, 210)}


class GGUFError(Exception):
    pass


class TensorInfo:
    __slots__ = ("name", "shape", "type", "offset", "nbytes", "data_start")

    def __init__(self, name, shape, ttype, offset):
        self.name = name
        self.shape = shape          # ggml order: shape[0] = row length
        self.type = ttype
        self.offset = offset
        n = 1
        for d in shape:
            n *= d
        if ttype not in _BLOCK:
            raise GGUFError("tensor %s: unsupported ggml type %d" % (name, ttype))
        bs, bb = _BLOCK[ttype]
        if shape[0] % bs:
            raise GGUFError("tensor %s: row length %d not a multiple of block %d"
                            % (name, shape[0], bs))
        self.nbytes = n // bs * bb
        self.data_start = None

    @property
    def n_elements(self):
        n = 1
        for d in self.shape:
            n *= d
        return n


class LazyStrings:
    """A GGUF string array, decoded on access."""

    def __init__(self, buf, offs):
        self._buf = buf
        self._offs = offs

    def __len__(self):
        return len(self._offs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        p, n = self._offs[i]
        return self._buf[p:p + n].decode("utf-8", errors="surrogateescape")

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        return repr(self[:8])[:-1] + ", ...] (%d strings)" % len(self)


class GGUFFile:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._pos = 0
        self.metadata = {}
        self.tensors = {}
        self._parse()

    # -- low level ---------------------------------------------------------
    def _take(self, n):
        if n < 0 or self._pos + n > len(self._buf):
            raise GGUFError("truncated file at offset %d (need %d bytes)" % (self._pos, n))
        b = self._buf[self._pos:self._pos + n]
        self._pos += n
        return b

    def _scalar(self, t):
        fmt = _SCALAR[t]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self):
        n = self._scalar(T_UINT64)
        return self._take(n).decode("utf-8", errors="surrogateescape")

    def _string_array(self, n):
        """n strings; decoded lazily (a tokenizer's 128k tokens and 280k merges
        are walked, not decoded, unless asked for)."""
        buf, pos, size = self._buf, self._pos, len(self._buf)
        offs = []
        unpack = struct.unpack_from
        for _ in range(n):
            if pos + 8 > size:
                raise GGUFError("truncated string array at offset %d" % pos)
            ln = unpack("<Q", buf, pos)[0]
            pos += 8
            if pos + ln > size:
                raise GGUFError("string past end of file at offset %d" % pos)
            offs.append((pos, ln))
            pos += ln
        self._pos = pos
        return LazyStrings(buf, offs)

    def _value(self, t):
        if t in _SCALAR:
            return self._scalar(t)
        if t == T_STRING:
            return self._string()
        if t == T_ARRAY:
            et = self._scalar(T_UINT32)
            n = self._scalar(T_UINT64)
            if et in _NP_SCALAR:   # fast path for numeric arrays
                dt = np.dtype(_NP_SCALAR[et])
                raw = self._take(n * dt.itemsize)
                arr = np.frombuffer(raw, dtype=dt)
                return arr.astype(bool) if et == T_BOOL else arr
            if et == T_STRING:
                return self._string_array(n)
            return [self._value(et) for _ in range(n)]
        raise GGUFError("unknown metadata value type %d at offset %d" % (t, self._pos))

    # -- parse -------------------------------------------------------------
    def _parse(self):
        if self._take(4) != GGUF_MAGIC:
            raise GGUFError("bad magic")
        self.version = self._scalar(T_UINT32)
        if self.version not in (2, 3):
            raise GGUFError("unsupported GGUF version %d" % self.version)
        n_tensors = self._scalar(T_UINT64)
        n_kv = self._scalar(T_UINT64)
        for _ in range(n_kv):
            key = self._string()
            t = self._scalar(T_UINT32)
            self.metadata[key] = self._value(t)
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            nd = self._scalar(T_UINT32)
            shape = [self._scalar(T_UINT64) for _ in range(nd)]
            t = self._scalar(T_UINT32)
            off = self._scalar(T_UINT64)
            infos.append(TensorInfo(name, shape, t, off))
        align = int(self.metadata.get("general.alignment", 32))
        start = (self._pos + align - 1) // align * align
        self.data_offset = start
        for ti in infos:
            if ti.offset % align:
                raise GGUFError("tensor %s: misaligned offset" % ti.name)
            ti.data_start = start + ti.offset
            if ti.data_start + ti.nbytes > len(self._buf):
                raise GGUFError("tensor %s: data past end of file" % ti.name)
            self.tensors[ti.name] = ti

    # -- access ------------------------------------------------------------
    def raw(self, name):
        ti = self.tensors[name]
        return np.frombuffer(self._buf, dtype=np.uint8, count=ti.nbytes,
                             offset=ti.data_start)

    def get(self, name, default=None):
        return self.metadata.get(name, default)

    def tensor(self, name):
        """Dequantize tensor `name` to a float64 ndarray in numpy order
        (reversed ggml shape: a 2-D weight comes back as [n_out, n_in])."""
        ti = self.tensors[name]
        flat = dequantize(self.raw(name), ti.type, ti.n_elements)
        return flat.reshape(list(reversed(ti.shape)))

    def close(self):
        self._buf.close()


def dequantize(raw, ttype, n):
    """raw: uint8 array of the tensor's bytes; returns float64[n]."""
    if ttype == GGML_F32:
        return raw.view("<f4").astype(np.float64)
    if ttype == GGML_F16:
        return raw.view("<f2").astype(np.float64)
    if ttype == GGML_BF16:
        u = raw.view("<u2").astype(np.uint32) << 16
        return u.view("<f4").astype(np.float64)
    if ttype == GGML_Q8_0:
        blk = raw.reshape(-1, 34)
        d = blk[:, :2].copy().view("<f2").astype(np.float64)        # [nb,1]
        q = blk[:, 2:].copy().view(np.int8).astype(np.float64)      # [nb,32]
        return (d * q).reshape(-1)
    if ttype == GGML_Q4_0:
        blk = raw.reshape(-1, 18)
        d = blk[:, :2].copy().view("<f2").astype(np.float64)
        qs = blk[:, 2:]
        lo = (qs & 0x0F).astype(np.float64) - 8.0   # elements 0..15
        hi = (qs >> 4).astype(np.float64) - 8.0     # elements 16..31
        return (d * np.concatenate([lo, hi], axis=1)).reshape(-1)
    if ttype == GGML_Q4_K:
        return _dequantize_q4_k(raw.reshape(-1, 144))
    if ttype == GGML_Q6_K:
        return _dequantize_q6_k(raw.reshape(-1, 210))
    raise GGUFError("unsupported ggml type %d" % ttype)


def _f16(col):
    return col.copy().view("<f2").astype(np.float64)                # [nb,1]


def _dequantize_q4_k(blk):
    nb = blk.shape[0]
    d, dmin = _f16(blk[:, 0:2]), _f16(blk[:, 2:4])
    s = blk[:, 4:16].astype(np.int64)
    sc = np.concatenate([s[:, 0:4] & 63,
                         (s[:, 8:12] & 15) | (s[:, 0:4] >> 6) << 4], axis=1)
    m = np.concatenate([s[:, 4:8] & 63,
                        (s[:, 8:12] >> 4) | (s[:, 4:8] >> 6) << 4], axis=1)
    qs = blk[:, 16:].reshape(nb, 4, 32)
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(nb, 8, 32)    # sub-block j = 2*run + (high nibble)
    w = d[:, :, None] * sc[:, :, None] * q - dmin[:, :, None] * m[:, :, None]
    return w.reshape(-1)


def _dequantize_q6_k(blk):
    nb = blk.shape[0]
    ql = blk[:, :128].reshape(nb, 2, 64).astype(np.int64)
    qh = blk[:, 128:192].reshape(nb, 2, 32).astype(np.int64)
    sc = blk[:, 192:208].copy().view(np.int8).astype(np.float64)    # [nb,16]
    d = _f16(blk[:, 208:210])
    lo = np.concatenate([ql[:, :, :32] & 15, ql[:, :, 32:] & 15,
                         ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
    hi = np.concatenate([qh & 3, qh >> 2 & 3, qh >> 4 & 3, qh >> 6 & 3], axis=2)
    q = ((lo | hi << 4) - 32).reshape(nb, 16, 16).astype(np.float64)
    return (d[:, :, None] * sc[:, :, None] * q).reshape(-1)


def _selftest():
    """Hand-built Q4_K/Q6_K blocks against values worked out by hand from the
    layout above (the same blocks as tests/unit/test_kernels.c)."""
    b = bytearray(144)
    b[0:4] = bytes([0x00, 0x38, 0x00, 0x34])                       # d = 0.5, dmin = 0.25
    b[4:16] = bytes([0xC1, 0x3F, 0x52, 0x20, 0x00, 0x85, 0x3F, 0xE8, 0x7D, 0x26, 0xF0, 0x01])
    b[16:] = bytes((k * 37 + 11) & 255 for k in range(128))
    w = dequantize(np.frombuffer(bytes(b), np.uint8), GGML_Q4_K, 256)
    assert [w[i] for i in (0, 32, 170, 200, 255)] == [5.5, -1.25, 24.5, 20.25, -9.0], w[[0, 32, 170, 200, 255]]
    b = bytearray(210)
    b[:128] = bytes((k * 29 + 5) & 255 for k in range(128))
    b[128:192] = bytes((k * 53 + 7) & 255 for k in range(64))
    b[192:208] = bytes(v & 255 for v in (-128, 127, -1, 5, 0, 64, -64, 3, 2, -7, 100, -100, 1, 33, -33, 9))
    b[208:210] = bytes([0x00, 0x30])                               # d = 0.125
    w = dequantize(np.frombuffer(bytes(b), np.uint8), GGML_Q6_K, 256)
    want = {0: -336.0, 17: -476.25, 40: -3.625, 77: 0.0, 100: -136.0, 129: -7.5, 255: -29.25}
    assert all(w[i] == v for i, v in want.items()), [(i, w[i]) for i in want]
    print("gguf_reader self-test: ok")


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        _selftest()
        sys.exit(0)
    g = GGUFFile(sys.argv[1])
    print("GGUF v%d, %d kv, %d tensors" % (g.version, len(g.metadata), len(g.tensors)))
    for k, v in g.metadata.items():
        s = repr(v)
        print("  %s = %s" % (k, s if len(s) < 80 else s[:77] + "..."))
    for t in g.tensors.values():
        print("  %-28s %-5s %s" % (t.name, TYPE_NAMES.get(t.type, t.type), t.shape))
