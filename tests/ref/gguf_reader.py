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
    F32=0, F16=1, Q4_0=2, Q8_0=8, BF16=30.
"""

import mmap
import struct

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
TYPE_NAMES = {GGML_F32: "f32", GGML_F16: "f16", GGML_Q4_0: "q4_0",
              GGML_Q8_0: "q8_0", GGML_BF16: "bf16"}
# (block size in elements, bytes per block)
_BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2),
          GGML_Q8_0: (32, 34), GGML_Q4_0: (32, 18)}


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
    raise GGUFError("unsupported ggml type %d" % ttype)


if __name__ == "__main__":
    import sys
    g = GGUFFile(sys.argv[1])
    print("GGUF v%d, %d kv, %d tensors" % (g.version, len(g.metadata), len(g.tensors)))
    for k, v in g.metadata.items():
        s = repr(v)
        print("  %s = %s" % (k, s if len(s) < 80 else s[:77] + "..."))
    for t in g.tensors.values():
        print("  %-28s %-5s %s" % (t.name, TYPE_NAMES.get(t.type, t.type), t.shape))
