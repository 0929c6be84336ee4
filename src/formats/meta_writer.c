/*
 * Writing Meta original folders: params.json, consolidated.NN.pth as torch.save writes them, and
 * tokenizer.model. LLAMAC_META_SHARDS=N (default 1) splits the weights into N model-parallel shards
 * the way Meta's fairscale layers do (see model/model_meta.c), so that joining them is tested.
 *
 * A .pth is a zip of STORED entries under one top folder (Meta's files use "consolidated"):
 *   consolidated/data.pkl     pickle protocol 2 of the state dict, an OrderedDict of
 *                             _rebuild_tensor_v2(persistent_load(('storage', torch.BFloat16Storage, key,
 *                             'cpu', numel)), offset, shape, stride, False, OrderedDict())
 *   consolidated/byteorder    "little"
 *   consolidated/data/<key>   each storage's raw little-endian bytes
 *   consolidated/version      "3\n"
 * Like torch (miniz), every entry's data starts on a 64-byte boundary thanks to a padding extra field
 * ("FB") in its local header, zip64 fields appear where a size or offset needs them, and the archive
 * ends with zip64 end records followed by the classic one.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "base/outfile.h"
#include "formats/model_writer.h"
#include "formats/zip.h"
#include "kernels/types.h"
#include "tokenizer/tokenizer.h"

#define TOP "consolidated"
#define MAX_SHARDS 64

/* ---- growing byte buffer ------------------------------------------------------------------------ */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put16(buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}
static void put32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void put64(buf *b, uint64_t v) {
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}

/* ---- zip writer --------------------------------------------------------------------------------- */

typedef struct zip_rec {
    char name[96];
    uint32_t crc;
    uint64_t size, offset;
} zip_rec;

typedef struct zip_writer {
    FILE *f;
    const char *path;
    uint64_t pos;
    zip_rec *recs;
    size_t n, cap;
} zip_writer;

static bool zw_write(zip_writer *w, const void *d, size_t n, llamac_error *err) {
    if (n && fwrite(d, 1, n, w->f) != n) return llc_fail(err, "%s: write failed: %s", w->path, strerror(errno));
    w->pos += n;
    return true;
}

/* DOS date of 1980-01-01, 00:00: fixed, so the same weights give the same bytes. */
#define DOS_DATE 0x0021

static bool zw_add(zip_writer *w, const char *name, const void *data, uint64_t size, llamac_error *err) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        zip_rec *r = realloc(w->recs, cap * sizeof *r);
        if (!r) return llc_fail(err, "out of memory");
        w->recs = r;
        w->cap = cap;
    }
    zip_rec *r = &w->recs[w->n++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->crc = llc_crc32(0, data, (size_t)size);
    r->size = size;
    r->offset = w->pos;
    bool big = size >= 0xFFFFFFFFu;
    size_t nlen = strlen(name);
    /* torch's padding: the data starts at the next multiple of 64 after the header, the name, the
     * zip64 field (if any) and the 4-byte header of the padding field itself. */
    uint64_t start = w->pos + 30 + nlen + (big ? 20 : 0) + 4;
    uint16_t pad = (uint16_t)((64 - start % 64) % 64);
    buf h = {0};
    put32(&h, 0x04034b50);
    put16(&h, big ? 45 : 20);
    put16(&h, 0);
    put16(&h, 0);
    put16(&h, 0);
    put16(&h, DOS_DATE);
    put32(&h, r->crc);
    put32(&h, big ? 0xFFFFFFFFu : (uint32_t)size);
    put32(&h, big ? 0xFFFFFFFFu : (uint32_t)size);
    put16(&h, (uint16_t)nlen);
    put16(&h, (uint16_t)((big ? 20 : 0) + 4 + pad));
    put(&h, name, nlen);
    if (big) {
        put16(&h, 1);
        put16(&h, 16);
        put64(&h, size);
        put64(&h, size);
    }
    put16(&h, 0x4246); /* "FB" */
    put16(&h, pad);
    for (int i = 0; i < pad; i++) put8(&h, 'Z');
    bool ok = !h.oom || llc_fail(err, "out of memory");
    ok = ok && zw_write(w, h.p, h.n, err) && zw_write(w, data, (size_t)size, err);
    free(h.p);
    return ok;
}

static bool zw_finish(zip_writer *w, llamac_error *err) {
    buf c = {0};
    uint64_t cd_off = w->pos;
    for (size_t i = 0; i < w->n; i++) {
        const zip_rec *r = &w->recs[i];
        bool big = r->size >= 0xFFFFFFFFu, far = r->offset >= 0xFFFFFFFFu;
        size_t nlen = strlen(r->name);
        uint16_t xlen = (uint16_t)(big || far ? 4 + (big ? 16 : 0) + (far ? 8 : 0) : 0);
        put32(&c, 0x02014b50);
        put16(&c, 0x031e); /* made by: Unix, spec 3.0, as miniz writes */
        put16(&c, big || far ? 45 : 20);
        put16(&c, 0);
        put16(&c, 0);
        put16(&c, 0);
        put16(&c, DOS_DATE);
        put32(&c, r->crc);
        put32(&c, big ? 0xFFFFFFFFu : (uint32_t)r->size);
        put32(&c, big ? 0xFFFFFFFFu : (uint32_t)r->size);
        put16(&c, (uint16_t)nlen);
        put16(&c, xlen);
        put16(&c, 0);
        put16(&c, 0);
        put16(&c, 0);
        put32(&c, 0100644u << 16); /* external attributes: a regular file, rw-r--r-- */
        put32(&c, far ? 0xFFFFFFFFu : (uint32_t)r->offset);
        put(&c, r->name, nlen);
        if (xlen) {
            put16(&c, 1);
            put16(&c, (uint16_t)(xlen - 4));
            if (big) {
                put64(&c, r->size);
                put64(&c, r->size);
            }
            if (far) put64(&c, r->offset);
        }
    }
    uint64_t cd_size = c.n, end64 = cd_off + cd_size;
    put32(&c, 0x06064b50); /* zip64 end of central directory record */
    put64(&c, 44);
    put16(&c, 0x031e);
    put16(&c, 45);
    put32(&c, 0);
    put32(&c, 0);
    put64(&c, w->n);
    put64(&c, w->n);
    put64(&c, cd_size);
    put64(&c, cd_off);
    put32(&c, 0x07064b50); /* zip64 locator */
    put32(&c, 0);
    put64(&c, end64);
    put32(&c, 1);
    put32(&c, 0x06054b50); /* end of central directory */
    put16(&c, 0);
    put16(&c, 0);
    put16(&c, (uint16_t)(w->n < 0xFFFF ? w->n : 0xFFFF));
    put16(&c, (uint16_t)(w->n < 0xFFFF ? w->n : 0xFFFF));
    put32(&c, cd_size < 0xFFFFFFFFu ? (uint32_t)cd_size : 0xFFFFFFFFu);
    put32(&c, cd_off < 0xFFFFFFFFu ? (uint32_t)cd_off : 0xFFFFFFFFu);
    put16(&c, 0);
    bool ok = !c.oom || llc_fail(err, "out of memory");
    ok = ok && zw_write(w, c.p, c.n, err);
    free(c.p);
    return ok;
}

/* ---- pickle writer ------------------------------------------------------------------------------ */

typedef struct pickler {
    buf b;
    uint32_t memo;                  /* next memo index */
    int64_t g_odict, g_rebuild, g_storage[3], s_storage, s_cpu; /* memo slots of repeated objects, -1: not yet */
} pickler;

static void pk_put(pickler *p) {
    if (p->memo < 256) {
        put8(&p->b, 'q');
        put8(&p->b, (uint8_t)p->memo);
    } else {
        put8(&p->b, 'r');
        put32(&p->b, p->memo);
    }
    p->memo++;
}

static void pk_get(pickler *p, int64_t slot) {
    if (slot < 256) {
        put8(&p->b, 'h');
        put8(&p->b, (uint8_t)slot);
    } else {
        put8(&p->b, 'j');
        put32(&p->b, (uint32_t)slot);
    }
}

static void pk_str(pickler *p, const char *s) {
    size_t n = strlen(s);
    put8(&p->b, 'X');
    put32(&p->b, (uint32_t)n);
    put(&p->b, s, n);
    pk_put(p);
}

/* A string or a global pickled once and fetched from the memo afterwards, as pickle does for the
 * same object met twice. */
static void pk_memo_str(pickler *p, int64_t *slot, const char *s) {
    if (*slot >= 0) {
        pk_get(p, *slot);
        return;
    }
    *slot = p->memo;
    pk_str(p, s);
}

static void pk_global(pickler *p, int64_t *slot, const char *module, const char *name) {
    if (*slot >= 0) {
        pk_get(p, *slot);
        return;
    }
    put8(&p->b, 'c');
    put(&p->b, module, strlen(module));
    put8(&p->b, '\n');
    put(&p->b, name, strlen(name));
    put8(&p->b, '\n');
    *slot = p->memo;
    pk_put(p);
}

static void pk_int(pickler *p, int64_t v) {
    if (v >= 0 && v < 256) {
        put8(&p->b, 'K');
        put8(&p->b, (uint8_t)v);
    } else if (v >= 0 && v < 65536) {
        put8(&p->b, 'M');
        put16(&p->b, (uint16_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        put8(&p->b, 'J');
        put32(&p->b, (uint32_t)(int32_t)v);
    } else {
        /* LONG1: the shortest little-endian two's complement that holds v (positive here) */
        uint8_t bytes[9];
        int n = 0;
        uint64_t u = (uint64_t)v;
        while (n == 0 || u || (bytes[n - 1] & 0x80)) {
            bytes[n++] = (uint8_t)u;
            u >>= 8;
        }
        put8(&p->b, 0x8a);
        put8(&p->b, (uint8_t)n);
        put(&p->b, bytes, (size_t)n);
    }
}

static void pk_int_tuple(pickler *p, const int64_t *v, int n) {
    if (n > 3) put8(&p->b, '(');
    for (int i = 0; i < n; i++) pk_int(p, v[i]);
    put8(&p->b, n == 0 ? ')' : n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
    pk_put(p);
}

/* ---- the model ---------------------------------------------------------------------------------- */

typedef enum { REPLICATED, SPLIT_ROWS, SPLIT_COLS } split_kind;

typedef struct out_tensor {
    char name[64];   /* Meta's name */
    int src;         /* index in src->tensors */
    split_kind split;
    int alias;       /* >= 0: shares the storage of that out_tensor (tied output) */
} out_tensor;

/* GGUF name -> Meta name and how Meta's model-parallel layers split it; false for names Meta's
 * checkpoints do not have. */
static bool meta_name(const char *g, char *out, size_t cap, split_kind *split) {
    static const struct {
        const char *gguf, *meta;
        split_kind split;
    } layer_map[] = {
        {"attn_norm", "attention_norm", REPLICATED},   {"ffn_norm", "ffn_norm", REPLICATED},
        {"attn_q", "attention.wq", SPLIT_ROWS},        {"attn_k", "attention.wk", SPLIT_ROWS},
        {"attn_v", "attention.wv", SPLIT_ROWS},        {"attn_output", "attention.wo", SPLIT_COLS},
        {"ffn_gate", "feed_forward.w1", SPLIT_ROWS},   {"ffn_up", "feed_forward.w3", SPLIT_ROWS},
        {"ffn_down", "feed_forward.w2", SPLIT_COLS},
    };
    static const struct {
        const char *gguf, *meta;
        split_kind split;
    } global_map[] = {
        {"token_embd.weight", "tok_embeddings.weight", SPLIT_ROWS},
        {"output_norm.weight", "norm.weight", REPLICATED},
        {"output.weight", "output.weight", SPLIT_ROWS},
    };
    for (size_t i = 0; i < sizeof global_map / sizeof global_map[0]; i++) {
        if (!strcmp(g, global_map[i].gguf)) {
            snprintf(out, cap, "%s", global_map[i].meta);
            *split = global_map[i].split;
            return true;
        }
    }
    int layer, len = 0;
    char part[32];
    if (sscanf(g, "blk.%d.%31[a-z_].weight%n", &layer, part, &len) == 2 && len > 0 && g[len] == 0 && layer >= 0) {
        for (size_t i = 0; i < sizeof layer_map / sizeof layer_map[0]; i++) {
            if (!strcmp(part, layer_map[i].gguf)) {
                snprintf(out, cap, "layers.%d.%s.weight", layer, layer_map[i].meta);
                *split = layer_map[i].split;
                return true;
            }
        }
    }
    return false;
}

/* The same computation as model_meta.c's (Meta's FeedForward): int(8 * dim / 3), times the
 * multiplier (truncated), rounded up to multiple_of. */
static int64_t meta_ffn_dim(int dim, int multiple_of, double multiplier) {
    int64_t h = (int64_t)8 * dim / 3;
    if (multiplier > 0) h = (int64_t)(multiplier * (double)h);
    return (int64_t)multiple_of * ((h + multiple_of - 1) / multiple_of);
}

/* Shortest decimal that reads back as the same double (params.json stays readable: 1.3, not
 * 1.3000000000000000444). */
static void fmt_double(char *out, size_t cap, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".eEn")) strncat(out, ".0", cap - strlen(out) - 1);
}

static void fmt_float(char *out, size_t cap, float v) {
    if (v == floorf(v) && fabsf(v) < 1e9f) {
        snprintf(out, cap, "%.1f", (double)v); /* 500000.0 rather than 5e+05 */
        return;
    }
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(out, cap, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".eEn")) strncat(out, ".0", cap - strlen(out) - 1);
}

/* multiple_of and ffn_dim_multiplier that make Meta's formula give ffn exactly: multiple_of 256 or
 * 1024 as Meta uses when they can, a multiplier with few decimals (Meta's 1.3, 1.5) when needed. */
static bool choose_ffn(int dim, int ffn, int *multiple_of, double *mult) {
    static const int mos[] = {256, 1024, 512, 128, 64, 32, 16, 8, 4, 2, 1};
    int64_t base = (int64_t)8 * dim / 3;
    for (size_t i = 0; i < sizeof mos / sizeof mos[0]; i++) {
        int mo = mos[i];
        if (ffn % mo) continue;
        if (meta_ffn_dim(dim, mo, 0) == ffn) {
            *multiple_of = mo;
            *mult = 0;
            return true;
        }
        for (int dec = 1; dec <= 6; dec++) {
            double scale = pow(10, dec);
            double m = round((double)ffn / (double)base * scale) / scale;
            for (int d = -2; d <= 2; d++) {
                double c = m + d / scale;
                char s[32];
                fmt_double(s, sizeof s, c);
                c = strtod(s, NULL); /* what the reader will see */
                if (c > 0 && meta_ffn_dim(dim, mo, c) == ffn) {
                    *multiple_of = mo;
                    *mult = c;
                    return true;
                }
            }
        }
    }
    return false;
}

typedef enum { TOK_COPY_SPM, TOK_COPY_TIKTOKEN, TOK_DERIVE_TIKTOKEN } tok_mode;

/* What to write as tokenizer.model: a copy of a SentencePiece .model or tiktoken file, the tiktoken
 * file beside a tokenizer.json (Meta's layout of the Llama 3 download), or one derived from the
 * vocabulary's byte strings. */
static bool choose_tokenizer(const llc_model_src *src, tok_mode *mode, char *copy_from, size_t cap, llamac_error *err) {
    const char *f = src->tokenizer_file;
    enum llc_tok_format kind = LLC_TOKFMT_UNKNOWN;
    if (f) llc_tokenizer_detect_file(f, &kind, NULL);
    if (kind == LLC_TOKFMT_SPM || kind == LLC_TOKFMT_TIKTOKEN) {
        snprintf(copy_from, cap, "%s", f);
        *mode = kind == LLC_TOKFMT_SPM ? TOK_COPY_SPM : TOK_COPY_TIKTOKEN;
        return true;
    }
    if (kind == LLC_TOKFMT_HF_JSON) {
        const char *slash = strrchr(f, '/');
        int dl = slash ? (int)(slash - f + 1) : 0;
        snprintf(copy_from, cap, "%.*stokenizer.model", dl, f);
        enum llc_tok_format beside = LLC_TOKFMT_UNKNOWN;
        llc_tokenizer_detect_file(copy_from, &beside, NULL);
        *mode = beside == LLC_TOKFMT_TIKTOKEN ? TOK_COPY_TIKTOKEN
                                              : TOK_DERIVE_TIKTOKEN; /* a byte-level BPE tokenizer.json: Llama 3 */
        return true;
    }
    return llc_fail(err, "cannot write tokenizer.model for the vocabulary from %s (needs a SentencePiece .model, a tiktoken file or a tokenizer.json)",
                    f ? f : "(no file)");
}

static bool copy_file(const char *from, const char *to, llamac_error *err) {
    size_t n = 0;
    char *d = llc_read_file(from, (size_t)1 << 30, &n, err);
    if (!d) return false;
    llc_outfile o;
    bool ok = llc_outfile_open(&o, to, err);
    if (ok && fwrite(d, 1, n, o.f) != n) ok = llc_fail(err, "%s: write failed: %s", to, strerror(errno));
    free(d);
    return llc_outfile_finish(&o, ok, err);
}

/* tiktoken's format: one "base64(bytes) rank" line per mergeable token, ids 0.. up to the first
 * special (control) token, which decodes to nothing. */
static bool derive_tiktoken(const llamac_tokenizer *tok, const char *to, llamac_error *err) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    llc_outfile o;
    if (!llc_outfile_open(&o, to, err)) return false;
    FILE *f = o.f;
    int n = llamac_tokenizer_n_vocab(tok);
    for (int id = 0; id < n; id++) {
        const char *s;
        size_t len = llamac_token_bytes(tok, id, &s);
        if (len == 0) break;
        for (size_t i = 0; i < len; i += 3) {
            uint32_t v = (uint32_t)(uint8_t)s[i] << 16 | (i + 1 < len ? (uint32_t)(uint8_t)s[i + 1] << 8 : 0) |
                         (i + 2 < len ? (uint8_t)s[i + 2] : 0);
            char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < len ? b64[v >> 6 & 63] : '=', i + 2 < len ? b64[v & 63] : '='};
            fwrite(q, 1, 4, f);
        }
        fprintf(f, " %d\n", id);
    }
    bool ok = !ferror(f) || llc_fail(err, "%s: write failed", to);
    return llc_outfile_finish(&o, ok, err);
}

typedef struct writer {
    const llc_model_src *src;
    const char *dir;
    int n_shards;
    out_tensor *outs;
    int n_outs;
    llamac_error *err;
} writer;

/* Shape of out tensor i in one shard. */
static void shard_shape(const writer *w, const out_tensor *o, int64_t shape[2], int *n_dims) {
    const llc_src_tensor *t = &w->src->tensors[o->src];
    *n_dims = t->rows == 1 && o->split == REPLICATED ? 1 : 2;
    if (*n_dims == 1) {
        shape[0] = t->cols;
        return;
    }
    shape[0] = t->rows / (o->split == SPLIT_ROWS ? w->n_shards : 1);
    shape[1] = t->cols / (o->split == SPLIT_COLS ? w->n_shards : 1);
}

static const char *storage_class(uint32_t type) {
    return type == LLC_F32 ? "FloatStorage" : type == LLC_F16 ? "HalfStorage" : "BFloat16Storage";
}

static bool write_pickle(const writer *w, buf *out, llamac_error *err) {
    pickler p = {.g_odict = -1, .g_rebuild = -1, .g_storage = {-1, -1, -1}, .s_storage = -1, .s_cpu = -1};
    put8(&p.b, 0x80);
    put8(&p.b, 2);
    pk_global(&p, &p.g_odict, "collections", "OrderedDict");
    put8(&p.b, ')');
    put8(&p.b, 'R');
    pk_put(&p);
    int key = 0, batch = 0;
    int *keys = calloc((size_t)w->n_outs, sizeof *keys);
    if (!keys) return llc_fail(err, "out of memory");
    for (int i = 0; i < w->n_outs; i++) {
        const out_tensor *o = &w->outs[i];
        uint32_t type = w->src->tensors[o->src].type;
        int64_t shape[2], stride[2];
        int nd;
        shard_shape(w, o, shape, &nd);
        stride[0] = nd == 2 ? shape[1] : 1;
        stride[1] = 1;
        if (batch == 0) put8(&p.b, '('); /* SETITEMS batches of 1000, as pickle writes them */
        pk_str(&p, o->name);
        pk_global(&p, &p.g_rebuild, "torch._utils", "_rebuild_tensor_v2");
        put8(&p.b, '(');
        put8(&p.b, '(');
        pk_memo_str(&p, &p.s_storage, "storage");
        int si = type == LLC_F32 ? 0 : type == LLC_F16 ? 1 : 2;
        pk_global(&p, &p.g_storage[si], "torch", storage_class(type));
        keys[i] = o->alias >= 0 ? keys[o->alias] : key++;
        char ks[16];
        snprintf(ks, sizeof ks, "%d", keys[i]);
        pk_str(&p, ks);
        pk_memo_str(&p, &p.s_cpu, "cpu");
        pk_int(&p, nd == 2 ? shape[0] * shape[1] : shape[0]);
        put8(&p.b, 't');
        pk_put(&p);
        put8(&p.b, 'Q');
        pk_int(&p, 0);
        pk_int_tuple(&p, shape, nd);
        pk_int_tuple(&p, stride, nd);
        put8(&p.b, 0x89);
        pk_get(&p, p.g_odict);
        put8(&p.b, ')');
        put8(&p.b, 'R');
        pk_put(&p);
        put8(&p.b, 't');
        pk_put(&p);
        put8(&p.b, 'R');
        pk_put(&p);
        if (++batch == 1000 || i == w->n_outs - 1) {
            put8(&p.b, 'u');
            batch = 0;
        }
    }
    put8(&p.b, '.');
    free(keys);
    if (p.b.oom) {
        free(p.b.p);
        return llc_fail(err, "out of memory");
    }
    *out = p.b;
    return true;
}

/* The bytes of out tensor o in shard s: the whole tensor is produced by src->fill, then sliced. */
static bool shard_bytes(const writer *w, const out_tensor *o, int s, uint8_t *full, uint8_t *part, uint64_t *n,
                        llamac_error *err) {
    const llc_src_tensor *t = &w->src->tensors[o->src];
    size_t es = llc_type_get(t->type)->type_size;
    uint64_t total = (uint64_t)t->rows * (uint64_t)t->cols * es;
    if (!w->src->fill(w->src->ctx, o->src, full, total, err)) return false;
    if (o->split == REPLICATED || w->n_shards == 1) {
        memcpy(part, full, (size_t)total);
        *n = total;
    } else if (o->split == SPLIT_ROWS) {
        *n = total / (uint64_t)w->n_shards;
        memcpy(part, full + (size_t)(*n * (uint64_t)s), (size_t)*n);
    } else {
        size_t w_all = (size_t)t->cols * es, w_part = w_all / (size_t)w->n_shards;
        for (int64_t r = 0; r < t->rows; r++) memcpy(part + (size_t)r * w_part, full + (size_t)r * w_all + (size_t)s * w_part, w_part);
        *n = (uint64_t)w_part * (uint64_t)t->rows;
    }
    return true;
}

static bool write_shard(const writer *w, int s, llamac_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/consolidated.%02d.pth", w->dir, s);
    buf pkl = {0};
    if (!write_pickle(w, &pkl, err)) return false;
    zip_writer z = {.path = path};
    llc_outfile o;
    if (!llc_outfile_open(&o, path, err)) {
        free(pkl.p);
        return false;
    }
    z.f = o.f;
    uint64_t biggest = 0;
    for (int i = 0; i < w->n_outs; i++) {
        const llc_src_tensor *t = &w->src->tensors[w->outs[i].src];
        uint64_t b = (uint64_t)t->rows * (uint64_t)t->cols * llc_type_get(t->type)->type_size;
        if (b > biggest) biggest = b;
    }
    uint8_t *full = malloc((size_t)biggest), *part = malloc((size_t)biggest);
    bool ok = full && part;
    if (!ok) llc_fail(err, "out of memory");
    ok = ok && zw_add(&z, TOP "/data.pkl", pkl.p, pkl.n, err) && zw_add(&z, TOP "/byteorder", "little", 6, err);
    int key = 0;
    for (int i = 0; ok && i < w->n_outs; i++) {
        if (w->outs[i].alias >= 0) continue; /* its storage is already written */
        uint64_t n = 0;
        char name[64];
        snprintf(name, sizeof name, TOP "/data/%d", key++);
        ok = shard_bytes(w, &w->outs[i], s, full, part, &n, err) && zw_add(&z, name, part, n, err);
    }
    ok = ok && zw_add(&z, TOP "/version", "3\n", 2, err) && zw_finish(&z, err);
    ok = llc_outfile_finish(&o, ok, err);
    free(full);
    free(part);
    free(pkl.p);
    free(z.recs);
    return ok;
}

static bool write_params(const writer *w, bool spm, llamac_error *err) {
    const llc_model_src *s = w->src;
    int multiple_of;
    double mult;
    if (!choose_ffn(s->dim, s->ffn_dim, &multiple_of, &mult))
        return llc_fail(err, "%s: no multiple_of / ffn_dim_multiplier gives the feed-forward size %d for dim %d in Meta's formula",
                        w->dir, s->ffn_dim, s->dim);
    char path[4096], num[64];
    snprintf(path, sizeof path, "%s/params.json", w->dir);
    buf j = {0};
    char line[256];
#define ADD(...) (snprintf(line, sizeof line, __VA_ARGS__), put(&j, line, strlen(line)))
    ADD("{\"dim\": %d, \"n_layers\": %d, \"n_heads\": %d", s->dim, s->n_layers, s->n_heads);
    if (!spm || s->n_kv_heads != s->n_heads) ADD(", \"n_kv_heads\": %d", s->n_kv_heads);
    /* Llama 2's params.json leaves the vocabulary size to the tokenizer (-1). */
    ADD(", \"vocab_size\": %d, \"multiple_of\": %d", spm ? -1 : s->n_vocab, multiple_of);
    if (mult > 0) {
        fmt_double(num, sizeof num, mult);
        ADD(", \"ffn_dim_multiplier\": %s", num);
    }
    fmt_float(num, sizeof num, s->rms_eps);
    ADD(", \"norm_eps\": %s", num);
    fmt_float(num, sizeof num, s->rope_theta);
    ADD(", \"rope_theta\": %s", num);
    if (s->rope_factor > 0) {
        /* The reader's defaults are Meta's (see model_meta.c): factor 8, or 32 for a tied output
         * (Llama 3.2 1B/3B), low 1, high 4, original context 8192. What differs is written out. */
        if (s->rope_low_freq_factor != 1.0f || s->rope_original_ctx != 8192) {
            free(j.p);
            return llc_fail(err, "%s: rope scaling with low_freq_factor %g and original context %d cannot be written to params.json",
                            w->dir, s->rope_low_freq_factor, s->rope_original_ctx);
        }
        ADD(", \"use_scaled_rope\": true");
        if (s->rope_factor != (s->tied ? 32.0f : 8.0f)) {
            fmt_float(num, sizeof num, s->rope_factor);
            ADD(", \"rope_scaling_factor\": %s", num);
        }
        if (s->rope_high_freq_factor != 4.0f) {
            fmt_float(num, sizeof num, s->rope_high_freq_factor);
            ADD(", \"rope_high_freq_factor\": %s", num);
        }
    }
    ADD("}\n");
#undef ADD
    bool ok = !j.oom || llc_fail(err, "out of memory");
    llc_outfile o;
    if (ok && llc_outfile_open(&o, path, err)) {
        if (fwrite(j.p, 1, j.n, o.f) != j.n) ok = llc_fail(err, "%s: write failed", path);
        ok = llc_outfile_finish(&o, ok, err);
    } else {
        ok = false;
    }
    free(j.p);
    return ok;
}

static bool check_split(const writer *w, llamac_error *err) {
    const llc_model_src *s = w->src;
    int n = w->n_shards;
    if (s->n_heads % n || s->n_kv_heads % n)
        return llc_fail(err, "%s: %d shards must divide the %d heads and %d KV heads (as in Meta's code)", w->dir, n, s->n_heads,
                        s->n_kv_heads);
    for (int i = 0; i < w->n_outs; i++) {
        const out_tensor *o = &w->outs[i];
        const llc_src_tensor *t = &s->tensors[o->src];
        if ((o->split == SPLIT_ROWS && t->rows % n) || (o->split == SPLIT_COLS && t->cols % n))
            return llc_fail(err, "%s: tensor %s [%" PRId64 " x %" PRId64 "] cannot be split into %d shards", w->dir, o->name, t->rows,
                            t->cols, n);
    }
    return true;
}

bool llc_write_meta_folder(const llc_model_src *src, const char *dir, llamac_error *err) {
    writer w = {.src = src, .dir = dir, .n_shards = 1, .err = err};
    const char *env = getenv("LLAMAC_META_SHARDS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end || v < 1 || v > MAX_SHARDS) return llc_fail(err, "LLAMAC_META_SHARDS=%s: expected a shard count from 1 to %d", env, MAX_SHARDS);
        w.n_shards = (int)v;
    }
    tok_mode mode = TOK_DERIVE_TIKTOKEN;
    char tok_from[4096];
    if (!choose_tokenizer(src, &mode, tok_from, sizeof tok_from, err)) return false;
    bool spm = mode == TOK_COPY_SPM;
    if (!(w.outs = calloc((size_t)src->n_tensors + 1, sizeof *w.outs))) return llc_fail(err, "out of memory");
    bool ok = true;
    int emb = -1, has_output = 0;
    for (int i = 0; ok && i < src->n_tensors; i++) {
        const llc_src_tensor *t = &src->tensors[i];
        if (!strcmp(t->name, "rope_freqs.weight")) continue; /* params.json's use_scaled_rope stands for it */
        out_tensor *o = &w.outs[w.n_outs];
        if (!meta_name(t->name, o->name, sizeof o->name, &o->split)) {
            ok = llc_fail(err, "%s: tensor %s has no place in a Meta checkpoint", dir, t->name);
            break;
        }
        if (t->type != LLC_F32 && t->type != LLC_F16 && t->type != LLC_BF16) {
            ok = llc_fail(err, "%s: Meta checkpoints hold float32, float16 or bfloat16 tensors, not %s (use --type bf16)", dir,
                          llc_type_name(t->type));
            break;
        }
        o->src = i;
        o->alias = -1;
        if (!strcmp(o->name, "tok_embeddings.weight")) {
            emb = w.n_outs;
            /* Llama 2's ParallelEmbedding splits along dim, Llama 3's VocabParallelEmbedding along the vocabulary. */
            if (spm) o->split = SPLIT_COLS;
        }
        has_output |= !strcmp(o->name, "output.weight");
        w.n_outs++;
    }
    if (ok && emb < 0) ok = llc_fail(err, "%s: the model has no token_embd.weight", dir);
    if (ok && src->tied && !has_output) {
        /* Meta's 3.2 1B/3B files carry output.weight as a view of the embedding's storage; with the
         * embedding split along dim (Llama 2 layout) the two differ per shard and it becomes a copy. */
        out_tensor *o = &w.outs[w.n_outs++];
        *o = w.outs[emb];
        snprintf(o->name, sizeof o->name, "output.weight");
        o->split = SPLIT_ROWS;
        o->alias = w.outs[emb].split == SPLIT_ROWS ? emb : -1;
    }
    if (ok) ok = check_split(&w, err);
    if (ok) ok = llc_outdir_prepare(dir, true, err);
    if (ok) ok = write_params(&w, spm, err);
    for (int s = 0; ok && s < w.n_shards; s++) ok = write_shard(&w, s, err);
    /* Shards left from an earlier write with more of them would be joined in by the reader. */
    for (int s = w.n_shards; ok && s < MAX_SHARDS; s++) {
        char stale[4096];
        snprintf(stale, sizeof stale, "%s/consolidated.%02d.pth", dir, s);
        if (remove(stale) != 0 && errno != ENOENT) ok = llc_fail(err, "%s: cannot remove: %s", stale, strerror(errno));
    }
    if (ok) {
        char to[4096];
        snprintf(to, sizeof to, "%s/tokenizer.model", dir);
        ok = mode == TOK_DERIVE_TIKTOKEN ? derive_tiktoken(src->tok, to, err) : copy_file(tok_from, to, err);
    }
    free(w.outs);
    return ok;
}
