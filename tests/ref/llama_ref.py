"""Float64 numpy reference of the Llama forward pass, written from the math.

Independent of llamac's C code: it reads the GGUF with tests/ref/gguf_reader.py,
dequantizes every weight to float64 and computes

    h   = token_embd[ids]
    per layer l:
        x   = rmsnorm(h) * attn_norm
        q,k,v = Wq x, Wk x, Wv x            (GQA: n_head_kv <= n_head)
        rope(q), rope(k)                    adjacent pairs (2i, 2i+1), angle
                                            pos * base^(-2i/rope_dim) / rope_freqs[i]
        a   = softmax(q.k / sqrt(head_dim), causal) v
        h  += Wo a
        x   = rmsnorm(h) * ffn_norm
        h  += Wdown( silu(Wgate x) * (Wup x) )
    logits = Wout (rmsnorm(h) * output_norm)   (Wout = token_embd when tied)

Two modes:
  * exact   : the math on the dequantized weights, everything in float64.
  * emulate : the same, but the *input activation* of every weight matmul is
              first rounded the way llama.cpp-style kernels round it before the
              dot product with the stored weight type (the "vec_dot type"):
                 Q8_0 / Q4_0 weights -> activation quantized to Q8_0 blocks of
                     32 (d = max|x|/127, q = round(x/d), d stored as fp16)
                 BF16 weights        -> activation rounded to bf16 (RNE)
                 F16, F32 weights    -> no rounding (f32 activations; llama.cpp
                     rounds them to f16 for F16 weights: act_round={1: "f16"})
              The rest (norms, rope, attention, silu, residual) stays float64.
              With `record=...` the emulation also lists every rounding whose
              outcome is ambiguous at float32 precision (the input is within
              `amb_tol * rms(row)` of a rounding midpoint), with the alternative
              rounded value, so a test can bound the effect of a float32
              implementation rounding the other way (see tests/ref/README.md).
"""

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import (GGUFFile, GGML_F32, GGML_F16, GGML_BF16,  # noqa: E402
                         GGML_Q8_0, GGML_Q4_0)

# ----------------------------------------------------------------------------
# activation rounding (emulation of the kernels' input conversion)
# ----------------------------------------------------------------------------

F16_MAX = 65504.0


def _to_f16_f64(x):
    return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float64)


def _float_grid(x, mant_bits, min_exp):
    """Neighbouring representable values of a binary float format with
    `mant_bits` significand bits (incl. the implicit one) and smallest normal
    exponent `min_exp`: returns (lo, hi, ulp) with lo <= x <= hi (elementwise)."""
    ax = np.abs(x)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(ax > 0, ax, 1.0)))
    e = np.maximum(e, min_exp)
    ulp = np.exp2(e - (mant_bits - 1))
    r = x / ulp
    lo = np.floor(r) * ulp
    hi = lo + ulp
    return lo, hi, ulp


def round_float_format(x, mant_bits, min_exp):
    """Round-to-nearest-even of float64 x onto the grid (no overflow handling)."""
    lo, hi, ulp = _float_grid(x, mant_bits, min_exp)
    dlo = x - lo
    dhi = hi - x
    k_lo = np.round(lo / ulp)
    lo_even = (np.mod(k_lo, 2) == 0)
    pick_hi = (dhi < dlo) | ((dhi == dlo) & ~lo_even)
    return np.where(pick_hi, hi, lo), lo, hi, ulp


def round_bf16(X):
    return round_float_format(X, 8, -126)[0]


def round_f16(X):
    if np.any(np.abs(X) > F16_MAX):
        raise OverflowError("activation overflows f16")
    return round_float_format(X, 11, -14)[0]


def quant_q8_0(X, scale_f16=True):
    """Q8_0 round trip of the rows of X (last dim a multiple of 32).
    Returns (Xq, d_f32like, d_stored, q) with shapes [..., nb(,32)]."""
    shp = X.shape
    B = X.reshape(shp[:-1] + (shp[-1] // 32, 32))
    amax = np.max(np.abs(B), axis=-1)
    d = amax / 127.0
    with np.errstate(divide="ignore"):
        idd = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    q = np.round(B * idd[..., None])            # |B*id| <= 127
    q = np.clip(q, -127, 127)
    ds = _to_f16_f64(d) if scale_f16 else d
    Xq = (ds[..., None] * q).reshape(shp)
    return Xq, d, ds, q, idd


def kv_rounder(kind):
    """The round trip of a KV cache of element type kind ("f32", "f16", "bf16", "q8_0") on the keys
    (after RoPE) or values [T, n_head_kv, head_dim] of a layer: each value rounded to f32 first (llamac
    computes them in f32), then to the type; q8_0 blocks of 32 run along each position's row of
    n_head_kv * head_dim values, as llamac stores them."""
    def f32(x):
        return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)
    if kind == "f32":
        return f32
    if kind == "f16":
        return lambda x: round_f16(f32(x))
    if kind == "bf16":
        return lambda x: round_bf16(f32(x))
    if kind == "q8_0":
        def q8(x):
            shp = x.shape
            return quant_q8_0(f32(x).reshape(shp[0], -1))[0].reshape(shp)
        return q8
    raise ValueError("unknown KV type %r" % kind)


def rounding_rel_rms(X, kind, q8_scale_f16=True):
    """Predicted relative rms error of rounding each row of X, from the
    model 'rounding error uniform over one grid step (ulp)': per element
    variance ulp^2/12.  For Q8_0 the grid step is the block scale d and the
    fp16 rounding of d adds an error q*(d16 - d), variance q^2*ulp16(d)^2/12.
    Returns rho[t] = sqrt(sum_i var_i) / ||X[t]||."""
    if kind == "q8_0":
        T, n = X.shape
        B = X.reshape(T, n // 32, 32)
        d = np.max(np.abs(B), axis=-1) / 127.0
        var = (d ** 2 / 12.0)[..., None] * np.ones_like(B)
        if q8_scale_f16:
            ulp16 = _float_grid(d, 11, -14)[2]
            q = np.round(B / np.where(d > 0, d, 1.0)[..., None])
            var = var + q ** 2 * (ulp16 ** 2 / 12.0)[..., None]
        num = np.sqrt(np.sum(var.reshape(T, n), axis=-1))
    else:
        mb, me = (8, -126) if kind == "bf16" else (11, -14)
        ulp = _float_grid(X, mb, me)[2]
        num = np.sqrt(np.sum(ulp ** 2 / 12.0, axis=-1))
    den = np.sqrt(np.sum(X * X, axis=-1))
    return num / np.where(den > 0, den, 1.0)


def predicted_rel_error(stats):
    """First-order prediction of the relative rms logit error caused by the
    activation roundings listed in `stats` (see tests/ref/README.md):
    eps = sqrt(sum over matmuls of mean_t rho_t^2)."""
    return math.sqrt(sum(float(np.mean(rho ** 2)) for (_, _, rho) in stats))


# ----------------------------------------------------------------------------
# ambiguity analysis of one rounding site
# ----------------------------------------------------------------------------

def _ambiguous_float(X, mant_bits, min_exp, tol_rel, rms):
    """Elements of X within tol_rel * (rms(row) + |x|) of a rounding
    midpoint: list of (row, cols, alternative values, relative distance)."""
    R, lo, hi, ulp = round_float_format(X, mant_bits, min_exp)
    mid = lo + ulp / 2
    scale = rms + np.abs(X)
    dist = np.abs(X - mid) / scale
    amb = dist < tol_rel
    out = []
    for r, c in zip(*np.nonzero(amb)):
        alt = hi[r, c] if R[r, c] == lo[r, c] else lo[r, c]
        out.append((int(r), np.array([c]), np.array([alt]), float(dist[r, c])))
    return out


def _ambiguous_q8(X, tol_rel, rms, scale_f16):
    """Q8_0 ambiguities: an element whose x/d is within tol of a .5
    boundary (alternative: q +- 1), or a block scale d within tol of an fp16
    rounding midpoint (alternative: the other fp16 neighbour).  The
    tolerance of a value v is tol_rel * (rms(row) + |v|)."""
    Xq, d, ds, q, idd = quant_q8_0(X, scale_f16)
    T, n = X.shape
    nb = n // 32
    B = X.reshape(T, nb, 32)
    r = B * idd[..., None]
    frac_dist = np.abs(r - (np.floor(r) + 0.5))                      # in quanta
    tol_q = tol_rel * (rms[:, :, None] + np.abs(B)) * idd[..., None]  # in quanta
    out = []
    amb = (frac_dist < tol_q) & (np.abs(q) < 127)
    for t, b, j in zip(*np.nonzero(amb)):
        qalt = np.ceil(r[t, b, j]) if q[t, b, j] == np.floor(r[t, b, j]) else np.floor(r[t, b, j])
        out.append((int(t), np.array([b * 32 + j]), np.array([ds[t, b] * qalt]),
                    float(frac_dist[t, b, j] / idd[t, b] / (rms[t, 0] + abs(B[t, b, j])))))
    if scale_f16:
        # d = amax/127 rounded to fp16: ambiguous if d is near an fp16 midpoint
        # (amax known to +-tol, so d to +-tol/127)
        amax = np.max(np.abs(B), axis=-1)
        _, lo, hi, ulp = round_float_format(d, 11, -14)
        mid = lo + ulp / 2
        tol_d = tol_rel * (rms + amax) / 127.0
        ambd = (np.abs(d - mid) < tol_d) & (d > 0)
        for t, b in zip(*np.nonzero(ambd)):
            dalt = hi[t, b] if ds[t, b] == lo[t, b] else lo[t, b]
            out.append((int(t), np.arange(b * 32, b * 32 + 32), dalt * q[t, b],
                        float(abs(d[t, b] - mid[t, b]) * 127.0 / (rms[t, 0] + amax[t, b]))))
    return out


# ----------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------

class LlamaRef:
    """Float64 Llama forward pass from a GGUF file.

    mode = "exact" | "emulate".  In emulate mode `act_round` maps a ggml
    weight type to the activation rounding applied before the matmul:
    None, "bf16", "f16" or "q8_0".  q8_scale_f16: the Q8_0 activation block
    scale is stored as fp16 (llama.cpp's block_q8_0) — True by default.
    dtype: float64 for the reference; float32 gives a float32 twin used only
    to validate the test method (tests/ref/README.md)."""

    # A function applied to each layer's keys (after RoPE) and values before attention, e.g.
    # kv_rounder("q8_0") for a quantized KV cache; None keeps them exact.
    kv_round = None

    DEFAULT_ACT_ROUND = {GGML_F32: None, GGML_F16: None, GGML_BF16: "bf16",
                         GGML_Q8_0: "q8_0", GGML_Q4_0: "q8_0"}

    def __init__(self, path, mode="exact", act_round=None, q8_scale_f16=True,
                 dtype=np.float64):
        self.g = GGUFFile(path)
        g = self.g
        arch = g.get("general.architecture", "llama")
        if arch != "llama":
            raise ValueError("not a llama model: %r" % arch)
        self.mode = mode
        self.act_round = dict(self.DEFAULT_ACT_ROUND)
        if act_round:
            self.act_round.update(act_round)
        self.q8_scale_f16 = q8_scale_f16

        self.n_layer = int(g.get("llama.block_count"))
        self.n_embd = int(g.get("llama.embedding_length"))
        self.n_head = int(g.get("llama.attention.head_count"))
        self.n_head_kv = int(g.get("llama.attention.head_count_kv", self.n_head))
        self.head_dim = int(g.get("llama.attention.key_length", self.n_embd // self.n_head))
        self.eps = float(g.get("llama.attention.layer_norm_rms_epsilon", 1e-5))
        self.rope_base = float(g.get("llama.rope.freq_base", 10000.0))
        self.rope_dim = int(g.get("llama.rope.dimension_count", self.head_dim))
        self.bos_id = g.get("tokenizer.ggml.bos_token_id")
        assert self.n_head % self.n_head_kv == 0
        assert self.rope_dim % 2 == 0 and self.rope_dim <= self.head_dim

        self._w = {}
        self.dtype = np.dtype(dtype)
        self.types = {name: ti.type for name, ti in g.tensors.items()}
        self.tied = "output.weight" not in g.tensors
        self.out_name = "token_embd.weight" if self.tied else "output.weight"
        self.n_vocab = g.tensors["token_embd.weight"].shape[1]

        # RoPE frequencies (per pair i of the rotated part of a head)
        i = np.arange(self.rope_dim // 2, dtype=np.float64)
        freqs = self.rope_base ** (-2.0 * i / self.rope_dim)
        if "rope_freqs.weight" in g.tensors:
            ff = self.w("rope_freqs.weight").reshape(-1)
            assert ff.shape[0] == self.rope_dim // 2, "rope_freqs size"
            freqs = freqs / ff
        self.freqs = freqs

    def clone(self, mode, act_round=None, q8_scale_f16=None):
        """Same file and (shared) dequantized weights, another mode."""
        import copy
        c = copy.copy(self)
        c.mode = mode
        c.act_round = dict(self.act_round)
        if act_round:
            c.act_round.update(act_round)
        if q8_scale_f16 is not None:
            c.q8_scale_f16 = q8_scale_f16
        return c

    # weights -------------------------------------------------------------
    def w(self, name):
        a = self._w.get(name)
        if a is None:
            a = self.g.tensor(name)
            if self.dtype != np.float64:
                a = a.astype(self.dtype)
            self._w[name] = a
        return a

    # primitives ------------------------------------------------------------
    def rmsnorm(self, x, wname):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(ms + self.eps) * self.w(wname)

    def rope(self, x, pos):
        """x: [T, n_heads, head_dim]; rotates adjacent pairs of the first
        rope_dim dimensions of every head."""
        ang = pos[:, None].astype(np.float64) * self.freqs[None, :]    # [T, rd/2]
        c = np.cos(ang)[:, None, :].astype(x.dtype)
        s = np.sin(ang)[:, None, :].astype(x.dtype)
        out = x.copy()
        x0 = x[..., 0:self.rope_dim:2]
        x1 = x[..., 1:self.rope_dim:2]
        out[..., 0:self.rope_dim:2] = x0 * c - x1 * s
        out[..., 1:self.rope_dim:2] = x0 * s + x1 * c
        return out

    def _round_site(self, X, wname, site, ctx):
        """Emulated rounding of the activation X feeding weight `wname`."""
        if self.mode != "emulate":
            return X
        kind = self.act_round.get(self.types[wname])
        if kind is None:
            return X
        if kind == "q8_0":
            R = quant_q8_0(X, self.q8_scale_f16)[0]
        elif kind == "bf16":
            R = round_bf16(X)
        elif kind == "f16":
            R = round_f16(X)
        else:
            raise ValueError(kind)
        if ctx is not None and ctx.get("stats") is not None:
            ctx["stats"].append((site, wname, rounding_rel_rms(X, kind, self.q8_scale_f16)))
        if ctx is not None:
            rec = ctx.get("record")
            if rec is not None:
                X64 = np.asarray(X, dtype=np.float64)
                rms = np.sqrt(np.mean(X64 * X64, axis=-1, keepdims=True))
                if kind == "q8_0":
                    amb = _ambiguous_q8(X64, ctx["amb_tol"], rms, self.q8_scale_f16)
                else:
                    mb, me = (8, -126) if kind == "bf16" else (11, -14)
                    amb = _ambiguous_float(X64, mb, me, ctx["amb_tol"], rms)
                for (t, idx, vals, dist) in amb:
                    rec.append((site, t, idx, vals, dist))
            for ov in ctx.get("override") or ():
                if ov[0] == site:
                    R = R.copy()
                    R[ov[1], ov[2]] = ov[3]
        return R.astype(X.dtype, copy=False)

    def _shared_site(self, x, xr_prev, wname, prev_wname, site, ctx):
        """Input of a second matmul reading the same activation: the rounded
        copy is shared when the weight types agree (one conversion serves
        both, as in llama.cpp and llamac); only its statistics are added."""
        if self.types[wname] == self.types[prev_wname]:
            if ctx is not None and ctx.get("stats") is not None and self.mode == "emulate":
                kind = self.act_round.get(self.types[wname])
                if kind is not None:
                    ctx["stats"].append((site, wname, rounding_rel_rms(x, kind, self.q8_scale_f16)))
            return xr_prev
        return self._round_site(x, wname, site + (wname,), ctx)

    def matmul(self, X, wname, site, ctx):
        Xr = self._round_site(X, wname, site, ctx)
        return Xr @ self.w(wname).T

    # forward ---------------------------------------------------------------
    def forward(self, ids, last_only=True, record=None, override=None, amb_tol=1e-5,
                stats=None):
        """Logits for the token sequence `ids` (positions 0..T-1), float64.
        last_only: return [n_vocab] of the last position, else [T, n_vocab].
        record: a list to append ambiguous roundings to (emulate mode).
        override: list of (site, t, idx, values) forcing rounding outcomes.
        stats: a list to append (site, weight, rho) to for every weight matmul
               whose input is rounded (emulate mode), rho = predicted relative
               rms rounding error of the input, per row (rounding_rel_rms)."""
        ids = np.asarray(ids, dtype=np.int64)
        T = ids.shape[0]
        ctx = None
        if record is not None or override is not None or stats is not None:
            ctx = {"record": record, "override": override, "amb_tol": amb_tol,
                   "stats": stats}
        pos = np.arange(T)
        H, Hkv, D = self.n_head, self.n_head_kv, self.head_dim
        h = self.w("token_embd.weight")[ids].copy()               # [T, n_embd]
        mask = np.triu(np.full((T, T), -np.inf), k=1).astype(self.dtype)
        scale = 1.0 / math.sqrt(D)
        for l in range(self.n_layer):
            p = "blk.%d." % l
            x = self.rmsnorm(h, p + "attn_norm.weight")
            xr = self._round_site(x, p + "attn_q.weight", (l, "attn_in"), ctx)
            q = (xr @ self.w(p + "attn_q.weight").T).reshape(T, H, D)
            xr = self._shared_site(x, xr, p + "attn_k.weight", p + "attn_q.weight", (l, "attn_in"), ctx)
            k = (xr @ self.w(p + "attn_k.weight").T).reshape(T, Hkv, D)
            xr = self._shared_site(x, xr, p + "attn_v.weight", p + "attn_q.weight", (l, "attn_in"), ctx)
            v = (xr @ self.w(p + "attn_v.weight").T).reshape(T, Hkv, D)
            q = self.rope(q, pos)
            k = self.rope(k, pos)
            if self.kv_round is not None:
                k = self.kv_round(k)
                v = self.kv_round(v)
            rep = H // Hkv
            kh = np.repeat(k, rep, axis=1)       # head j uses kv head j // rep
            vh = np.repeat(v, rep, axis=1)
            s = np.einsum("thd,shd->hts", q, kh) * scale + mask[None]
            s = s - np.max(s, axis=-1, keepdims=True)
            pexp = np.exp(s)
            pexp /= np.sum(pexp, axis=-1, keepdims=True)
            a = np.einsum("hts,shd->thd", pexp, vh).reshape(T, H * D)
            h = h + self.matmul(a, p + "attn_output.weight", (l, "attn_out"), ctx)
            x = self.rmsnorm(h, p + "ffn_norm.weight")
            xr = self._round_site(x, p + "ffn_gate.weight", (l, "ffn_in"), ctx)
            gte = xr @ self.w(p + "ffn_gate.weight").T
            xr = self._shared_site(x, xr, p + "ffn_up.weight", p + "ffn_gate.weight", (l, "ffn_in"), ctx)
            up = xr @ self.w(p + "ffn_up.weight").T
            mid = gte / (1.0 + np.exp(-gte)) * up
            h = h + self.matmul(mid, p + "ffn_down.weight", (l, "ffn_mid"), ctx)
        if last_only:
            h = h[-1:]
        x = self.rmsnorm(h, "output_norm.weight")
        logits = self.matmul(x, self.out_name, ("out", "out_in"), ctx)
        if last_only:
            # record/override rows refer to the full sequence; the output site
            # only sees the last row
            return logits[0]
        return logits

    def ambiguous_roundings(self, ids, amb_tol=1e-5):
        """Emulate mode: logits of the last position and the list of
        roundings whose outcome a float32 implementation could legitimately
        take the other way (input within amb_tol * (rms(row) + |x|) of a
        rounding midpoint), nearest first: (site, t, idx, alt_values, dist)."""
        assert self.mode == "emulate"
        rec = []
        base = self.forward(ids, record=rec, amb_tol=amb_tol)
        rec.sort(key=lambda r: r[4])
        return base, rec

    def forward_flipped(self, ids, ambs):
        """Logits of the last position with the given ambiguous roundings
        (entries of ambiguous_roundings' list) taken the other way."""
        return self.forward(ids, override=[a[:4] for a in ambs])


def greedy(model, prompt_ids, n_total, eos_id=None):
    """Greedy continuation (recomputing the whole sequence at every step):
    returns the full id list, len == n_total (or shorter at EOS)."""
    ids = list(prompt_ids)
    while len(ids) < n_total:
        nxt = int(np.argmax(model.forward(ids)))
        if eos_id is not None and nxt == eos_id:
            break
        ids.append(nxt)
    return ids


def perplexity(model, tokens, n_ctx, bos_id):
    """llama.cpp's llama-perplexity convention: consecutive windows of n_ctx
    tokens (partial last window dropped), first token of each window replaced
    by BOS, the predictions of positions n_ctx/2 .. n_ctx-2 (of the next token)
    scored.  Returns (ppl, n_chunks, per-chunk running ppl)."""
    n_chunks = len(tokens) // n_ctx
    first = n_ctx // 2
    nll = 0.0
    count = 0
    running = []
    for c in range(n_chunks):
        win = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        win[0] = bos_id
        logits = model.forward(win, last_only=False)          # [n_ctx, V]
        for j in range(first, n_ctx - 1):
            z = logits[j]
            m = np.max(z)
            lse = m + math.log(np.sum(np.exp(z - m)))
            nll += lse - z[win[j + 1]]
            count += 1
        running.append(math.exp(nll / count))
    return math.exp(nll / count), n_chunks, running


def _sp(model_path):
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=model_path)


if __name__ == "__main__":
    # self-check against the golden greedy text (no llamac needed):
    #   python3 tests/ref/llama_ref.py [SHARED] [N_TOKENS]
    import json
    shared = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LLAMAC_SHARED", "../shared")
    n_check = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    m = LlamaRef(os.path.join(shared, "models/stories260K/stories260K.gguf"))
    sp = _sp(os.path.join(shared, "models/stories260K/tok512.model"))
    bad = 0
    with open(os.path.join(shared, "testdata/golden/stories260K-greedy.jsonl")) as f:
        for line in f:
            gold = json.loads(line)
            pids = [1] + sp.encode(gold["prompt"])
            ids = greedy(m, pids, len(pids) + n_check)
            text = sp.decode(ids[1:])
            ok = gold["text"].startswith(text)
            bad += not ok
            print("%s %r -> %d tokens%s" % ("ok  " if ok else "FAIL", gold["prompt"],
                                            len(ids) - len(pids),
                                            "" if ok else "\n  got  %r\n  want %r" % (text, gold["text"][:len(text) + 20])))
    sys.exit(1 if bad else 0)
