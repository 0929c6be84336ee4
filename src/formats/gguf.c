/*
 * GGUF reader and writer.
 *
 * The reader walks the header with a bounds-checked cursor: every length is compared with the bytes
 * that remain before anything is read or allocated, so a hostile file can at worst cost an error
 * message. Allocations are bounded by the file size (each kv or tensor record needs at least a few
 * bytes of file, so their counts cannot exceed size / record minimum).
 */
#include "formats/gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/outfile.h"
#include "kernels/types.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NESTING 8

typedef struct cursor {
    const uint8_t *p, *end;
    llamac_error *err;
} cursor;

static const size_t vtype_size[GGUF_NTYPES] = {
    [GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4, [GGUF_I32] = 4,
    [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8, [GGUF_F64] = 8,
};

static const char *const vtype_names[GGUF_NTYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *llc_gguf_type_name(uint32_t t) { return t < GGUF_NTYPES ? vtype_names[t] : "unknown"; }

static bool need(cursor *c, uint64_t n, const char *what) {
    if ((uint64_t)(c->end - c->p) < n) return llc_fail(c->err, "truncated file while reading %s", what);
    return true;
}

static bool rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (!need(c, 4, what)) return false;
    memcpy(v, c->p, 4);
    c->p += 4;
    return true;
}

static bool rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (!need(c, 8, what)) return false;
    memcpy(v, c->p, 8);
    c->p += 8;
    return true;
}

static bool rd_str(cursor *c, llc_str *s, const char *what) {
    uint64_t n;
    if (!rd_u64(c, &n, what)) return false;
    if (!need(c, n, what)) return false;
    s->ptr = (const char *)c->p;
    s->len = n;
    c->p += n;
    return true;
}

/* Scalar value of a fixed-size type into kv->v. */
static void decode_scalar(uint32_t type, const uint8_t *p, llc_gguf_kv *kv) {
    switch (type) {
    case GGUF_U8: kv->v.u = p[0]; break;
    case GGUF_BOOL: kv->v.u = p[0] != 0; break;
    case GGUF_I8: kv->v.i = (int8_t)p[0]; break;
    case GGUF_U16: { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
    case GGUF_I16: { int16_t x; memcpy(&x, p, 2); kv->v.i = x; break; }
    case GGUF_U32: { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
    case GGUF_I32: { int32_t x; memcpy(&x, p, 4); kv->v.i = x; break; }
    case GGUF_F32: { float x; memcpy(&x, p, 4); kv->v.f = x; break; }
    case GGUF_U64: { uint64_t x; memcpy(&x, p, 8); kv->v.u = x; break; }
    case GGUF_I64: { int64_t x; memcpy(&x, p, 8); kv->v.i = x; break; }
    case GGUF_F64: { double x; memcpy(&x, p, 8); kv->v.f = x; break; }
    default: break;
    }
}

/* Skips (and so validates) n serialized array elements of a type, nested arrays included. */
static bool skip_elems(cursor *c, uint32_t type, uint64_t n, int depth) {
    if (type >= GGUF_NTYPES) return llc_fail(c->err, "unknown array element type %u", type);
    if (type == GGUF_STRING) {
        for (uint64_t i = 0; i < n; i++) {
            llc_str s;
            if (!rd_str(c, &s, "string array")) return false;
        }
        return true;
    }
    if (type == GGUF_ARRAY) {
        if (depth >= GGUF_MAX_NESTING) return llc_fail(c->err, "arrays nested deeper than %d", GGUF_MAX_NESTING);
        for (uint64_t i = 0; i < n; i++) {
            uint32_t et;
            uint64_t en;
            if (!rd_u32(c, &et, "nested array type") || !rd_u64(c, &en, "nested array length")) return false;
            if (!skip_elems(c, et, en, depth + 1)) return false;
        }
        return true;
    }
    uint64_t sz = vtype_size[type];
    if (n > (uint64_t)(c->end - c->p) / sz) return llc_fail(c->err, "array of %" PRIu64 " elements runs past the end of the file", n);
    c->p += n * sz;
    return true;
}

static bool read_kv(cursor *c, llc_gguf_kv *kv) {
    if (!rd_str(c, &kv->key, "metadata key")) return false;
    if (!rd_u32(c, &kv->type, "metadata type")) return false;
    uint32_t t = kv->type;
    if (t >= GGUF_NTYPES) return llc_fail(c->err, "metadata key '%.*s' has unknown type %u", (int)(kv->key.len > 64 ? 64 : kv->key.len), kv->key.ptr, t);
    if (t == GGUF_STRING) return rd_str(c, &kv->v.str, "metadata string");
    if (t == GGUF_ARRAY) {
        if (!rd_u32(c, &kv->v.arr.type, "array type") || !rd_u64(c, &kv->v.arr.n, "array length")) return false;
        const uint8_t *start = c->p;
        if (!skip_elems(c, kv->v.arr.type, kv->v.arr.n, 1)) return false;
        kv->v.arr.data = start;
        kv->v.arr.nbytes = (uint64_t)(c->p - start);
        return true;
    }
    if (!need(c, vtype_size[t], "metadata value")) return false;
    decode_scalar(t, c->p, kv);
    c->p += vtype_size[t];
    return true;
}

bool llc_str_eq(llc_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

const llc_gguf_kv *llc_gguf_find(const llc_gguf_file *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (llc_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const llc_gguf_tensor *llc_gguf_find_tensor(const llc_gguf_file *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (llc_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const llc_gguf_tensor *x = *(const llc_gguf_tensor *const *)a, *y = *(const llc_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static bool read_tensor_info(cursor *c, llc_gguf_tensor *t, uint64_t index) {
    if (!rd_str(c, &t->name, "tensor name")) return false;
    if (!rd_u32(c, &t->n_dims, "tensor dimensions")) return false;
    int nl = (int)(t->name.len > 64 ? 64 : t->name.len);
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return llc_fail(c->err, "tensor %" PRIu64 " '%.*s' has %u dimensions (1..4 allowed)", index, nl, t->name.ptr, t->n_dims);
    uint64_t total = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if (!rd_u64(c, &ne, "tensor shape")) return false;
        /* 2^40 elements per dimension is far beyond any model and keeps the product from overflowing. */
        if (ne == 0 || ne > (1ull << 40))
            return llc_fail(c->err, "tensor '%.*s' has an invalid dimension %" PRIu64, nl, t->name.ptr, ne);
        if (total > (1ull << 50) / ne) return llc_fail(c->err, "tensor '%.*s' is impossibly large", nl, t->name.ptr);
        total *= ne;
        t->ne[d] = (int64_t)ne;
    }
    if (!rd_u32(c, &t->type, "tensor type") || !rd_u64(c, &t->offset, "tensor offset")) return false;
    const llc_type_traits *tt = llc_type_get(t->type);
    if (!tt)
        return llc_fail(c->err, "tensor '%.*s' has type %s, which llamac does not support", nl, t->name.ptr, llc_type_name(t->type));
    if (t->ne[0] % tt->block_size != 0)
        return llc_fail(c->err, "tensor '%.*s' row length %" PRId64 " is not a multiple of the %s block size %d", nl,
                        t->name.ptr, t->ne[0], tt->name, tt->block_size);
    t->nbytes = (uint64_t)(total / (uint64_t)tt->block_size) * tt->type_size;
    return true;
}

/* Finds the first repeated string among n (keys or tensor names) with a hash set, so a file with
 * a hundred thousand entries costs milliseconds, not the quadratic pairwise check. Returns its index,
 * -1 if all differ, -2 if out of memory. */
static int64_t first_duplicate(const llc_str *(*get)(const llc_gguf_file *, uint64_t), const llc_gguf_file *g, uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    uint64_t *slots = calloc(cap, sizeof *slots); /* index + 1; 0 = empty */
    if (!slots) return -2;
    int64_t dup = -1;
    for (uint64_t i = 0; i < n && dup < 0; i++) {
        const llc_str *s = get(g, i);
        uint64_t h = 1469598103934665603ull;
        for (uint64_t k = 0; k < s->len; k++) h = (h ^ (unsigned char)s->ptr[k]) * 1099511628211ull;
        for (uint64_t j = h & (cap - 1);; j = (j + 1) & (cap - 1)) {
            if (!slots[j]) {
                slots[j] = i + 1;
                break;
            }
            const llc_str *o = get(g, slots[j] - 1);
            if (o->len == s->len && memcmp(o->ptr, s->ptr, s->len) == 0) {
                dup = (int64_t)i;
                break;
            }
        }
    }
    free(slots);
    return dup;
}
static const llc_str *kv_key(const llc_gguf_file *g, uint64_t i) { return &g->kv[i].key; }
static const llc_str *tensor_name(const llc_gguf_file *g, uint64_t i) { return &g->tensors[i].name; }

static void gguf_free_parts(llc_gguf_file *g) {
    free(g->kv);
    free(g->tensors);
    llc_unmap_file(&g->map);
    free(g);
}

/* header_only: the bytes may end after the tensor list (a file's head fetched alone); the tensors'
 * offsets are checked against each other, not against data that is not there, and their data is NULL. */
static llc_gguf_file *gguf_parse(llc_gguf_file *g, bool header_only, llamac_error *err) {
    cursor c = {g->map.data, g->map.data + g->map.size, err};
    if (g->map.size < 4 || memcmp(g->map.data, GGUF_MAGIC, 4) != 0) {
        llc_fail(err, "not a GGUF file (bad magic)");
        goto fail;
    }
    c.p += 4;
    if (!rd_u32(&c, &g->version, "version")) goto fail;
    if (g->version != 2 && g->version != 3) {
        llc_fail(err, "unsupported GGUF version %u (llamac reads 2 and 3)", g->version);
        goto fail;
    }
    if (!rd_u64(&c, &g->n_tensors, "tensor count") || !rd_u64(&c, &g->n_kv, "metadata count")) goto fail;
    /* A kv needs >= 12 bytes (key length + type) and a tensor info >= 24: counts beyond that are lies. */
    size_t remaining = (size_t)(c.end - c.p);
    if (g->n_kv > remaining / 12) {
        llc_fail(err, "metadata count %" PRIu64 " is impossible for a file of %zu bytes", g->n_kv, g->map.size);
        goto fail;
    }
    if (g->n_tensors > remaining / 24) {
        llc_fail(err, "tensor count %" PRIu64 " is impossible for a file of %zu bytes", g->n_tensors, g->map.size);
        goto fail;
    }
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        llc_fail(err, "out of memory reading the header");
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (!read_kv(&c, &g->kv[i])) {
            llc_error_prefix(err, "metadata entry %" PRIu64, i);
            goto fail;
        }
    }
    int64_t dup = first_duplicate(kv_key, g, g->n_kv);
    if (dup != -1) {
        if (dup == -2) llc_fail(err, "out of memory");
        else llc_fail(err, "duplicate metadata key '%.*s'", (int)(g->kv[dup].key.len > 64 ? 64 : g->kv[dup].key.len), g->kv[dup].key.ptr);
        goto fail;
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const llc_gguf_kv *al = llc_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_U32 && al->type != GGUF_U64 && al->type != GGUF_I32) {
            llc_fail(err, "general.alignment has type %s", llc_gguf_type_name(al->type));
            goto fail;
        }
        uint64_t a = al->v.u;
        if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20)) {
            llc_fail(err, "general.alignment %" PRIu64 " is not a power of two up to 1 MiB", a);
            goto fail;
        }
        g->alignment = a;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!read_tensor_info(&c, &g->tensors[i], i)) goto fail;

    uint64_t header_end = (uint64_t)(c.p - g->map.data);
    g->data_offset = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    uint64_t data_size = g->data_offset <= g->map.size ? g->map.size - g->data_offset : 0;
    if (header_only) data_size = UINT64_MAX;
    if (g->n_tensors > 0 && g->data_offset > g->map.size && !header_only) {
        llc_fail(err, "truncated file: tensor data section is missing");
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        llc_gguf_tensor *t = &g->tensors[i];
        int nl = (int)(t->name.len > 64 ? 64 : t->name.len);
        if (t->offset % g->alignment != 0) {
            llc_fail(err, "tensor '%.*s' offset %" PRIu64 " is not aligned to %" PRIu64, nl, t->name.ptr, t->offset, g->alignment);
            goto fail;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            llc_fail(err, "tensor '%.*s' (%" PRIu64 " bytes at offset %" PRIu64 ") runs past the end of the file (truncated?)", nl,
                     t->name.ptr, t->nbytes, t->offset);
            goto fail;
        }
        t->data = header_only ? NULL : g->map.data + g->data_offset + t->offset;
    }
    /* Overlapping tensors and duplicate names: sort by offset, then neighbours must not overlap. */
    if (g->n_tensors > 1) {
        llc_gguf_tensor **order = malloc(g->n_tensors * sizeof *order);
        if (!order) {
            llc_fail(err, "out of memory");
            goto fail;
        }
        for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
        qsort(order, g->n_tensors, sizeof *order, cmp_tensor_offset);
        for (uint64_t i = 1; i < g->n_tensors; i++) {
            if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset) {
                llc_fail(err, "tensors '%.*s' and '%.*s' overlap", (int)(order[i - 1]->name.len > 64 ? 64 : order[i - 1]->name.len),
                         order[i - 1]->name.ptr, (int)(order[i]->name.len > 64 ? 64 : order[i]->name.len), order[i]->name.ptr);
                free(order);
                goto fail;
            }
        }
        free(order);
        dup = first_duplicate(tensor_name, g, g->n_tensors);
        if (dup != -1) {
            if (dup == -2) llc_fail(err, "out of memory");
            else llc_fail(err, "duplicate tensor name '%.*s'", (int)(g->tensors[dup].name.len > 64 ? 64 : g->tensors[dup].name.len),
                          g->tensors[dup].name.ptr);
            goto fail;
        }
    }
    return g;
fail:
    gguf_free_parts(g);
    return NULL;
}

llc_gguf_file *llc_gguf_open(const char *path, llamac_error *err) {
    llc_gguf_file *g = calloc(1, sizeof *g);
    if (!g) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    if (!llc_map_file(&g->map, path, err)) {
        free(g);
        return NULL;
    }
    g = gguf_parse(g, false, err);
    if (!g) llc_error_prefix(err, "%s", path);
    return g;
}

static llc_gguf_file *open_memory(const void *data, size_t size, bool header_only, llamac_error *err) {
    llc_gguf_file *g = calloc(1, sizeof *g);
    if (!g) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    g->map.data = data;
    g->map.size = size;
    g->map.owns_map = 0;
    return gguf_parse(g, header_only, err);
}

llc_gguf_file *llc_gguf_open_memory(const void *data, size_t size, llamac_error *err) { return open_memory(data, size, false, err); }

llc_gguf_file *llc_gguf_open_header(const void *data, size_t size, llamac_error *err) { return open_memory(data, size, true, err); }

void llc_gguf_close(llc_gguf_file *g) {
    if (g) gguf_free_parts(g);
}

/* ---- typed getters ---------------------------------------------------------------------------- */

static bool is_int_type(uint32_t t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 || t == GGUF_I32 ||
           t == GGUF_U64 || t == GGUF_I64;
}
static bool is_signed_type(uint32_t t) { return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64; }

bool llc_gguf_get_u32(const llc_gguf_file *g, const char *key, uint32_t *out, llamac_error *err) {
    const llc_gguf_kv *kv = llc_gguf_find(g, key);
    if (!kv) return false;
    if (!is_int_type(kv->type)) return llc_fail(err, "metadata %s has type %s, expected an integer", key, llc_gguf_type_name(kv->type));
    if (is_signed_type(kv->type) ? (kv->v.i < 0 || kv->v.i > (int64_t)UINT32_MAX) : kv->v.u > UINT32_MAX)
        return llc_fail(err, "metadata %s is out of range", key);
    *out = (uint32_t)(is_signed_type(kv->type) ? (uint64_t)kv->v.i : kv->v.u);
    return true;
}

bool llc_gguf_get_f32(const llc_gguf_file *g, const char *key, float *out, llamac_error *err) {
    const llc_gguf_kv *kv = llc_gguf_find(g, key);
    if (!kv) return false;
    if (kv->type == GGUF_F32 || kv->type == GGUF_F64) *out = (float)kv->v.f;
    else if (is_int_type(kv->type)) *out = is_signed_type(kv->type) ? (float)kv->v.i : (float)kv->v.u;
    else return llc_fail(err, "metadata %s has type %s, expected a number", key, llc_gguf_type_name(kv->type));
    return true;
}

bool llc_gguf_get_str(const llc_gguf_file *g, const char *key, llc_str *out, llamac_error *err) {
    const llc_gguf_kv *kv = llc_gguf_find(g, key);
    if (!kv) return false;
    if (kv->type != GGUF_STRING) return llc_fail(err, "metadata %s has type %s, expected a string", key, llc_gguf_type_name(kv->type));
    *out = kv->v.str;
    return true;
}

bool llc_gguf_get_bool(const llc_gguf_file *g, const char *key, bool *out, llamac_error *err) {
    const llc_gguf_kv *kv = llc_gguf_find(g, key);
    if (!kv) return false;
    if (kv->type != GGUF_BOOL && !is_int_type(kv->type))
        return llc_fail(err, "metadata %s has type %s, expected a bool", key, llc_gguf_type_name(kv->type));
    *out = kv->v.u != 0;
    return true;
}

const llc_gguf_kv *llc_gguf_get_arr(const llc_gguf_file *g, const char *key, uint32_t elem_type, llamac_error *err) {
    const llc_gguf_kv *kv = llc_gguf_find(g, key);
    if (!kv) return NULL;
    if (kv->type != GGUF_ARRAY || kv->v.arr.type != elem_type) {
        llc_fail(err, "metadata %s is not an array of %s", key, llc_gguf_type_name(elem_type));
        return NULL;
    }
    return kv;
}

void llc_gguf_arr_strings(const llc_gguf_kv *kv, llc_str *out) {
    const uint8_t *p = kv->v.arr.data;
    for (uint64_t i = 0; i < kv->v.arr.n; i++) {
        uint64_t n;
        memcpy(&n, p, 8);
        out[i].ptr = (const char *)p + 8;
        out[i].len = n;
        p += 8 + n;
    }
}

double llc_gguf_arr_num(const llc_gguf_kv *kv, uint64_t i) {
    uint32_t t = kv->v.arr.type;
    if (t >= GGUF_NTYPES || t == GGUF_STRING || t == GGUF_ARRAY || i >= kv->v.arr.n) return 0;
    llc_gguf_kv tmp;
    decode_scalar(t, kv->v.arr.data + i * vtype_size[t], &tmp);
    if (t == GGUF_F32 || t == GGUF_F64) return tmp.v.f;
    return is_signed_type(t) ? (double)tmp.v.i : (double)tmp.v.u;
}

static void print_str(FILE *fp, llc_str s, size_t max) {
    fputc('"', fp);
    for (uint64_t i = 0; i < s.len && i < max; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch == '\n') fputs("\\n", fp);
        else if (ch < 0x20 || ch == 0x7f) fprintf(fp, "\\x%02x", ch);
        else fputc(ch, fp);
    }
    if (s.len > max) fputs("…", fp);
    fputc('"', fp);
}

void llc_gguf_print_value(FILE *fp, const llc_gguf_kv *kv) {
    switch (kv->type) {
    case GGUF_STRING: print_str(fp, kv->v.str, 120); break;
    case GGUF_BOOL: fputs(kv->v.u ? "true" : "false", fp); break;
    case GGUF_F32: case GGUF_F64: fprintf(fp, "%g", kv->v.f); break;
    case GGUF_ARRAY: {
        uint32_t t = kv->v.arr.type;
        fprintf(fp, "[%s × %" PRIu64 "]", llc_gguf_type_name(t), kv->v.arr.n);
        uint64_t show = kv->v.arr.n < 6 ? kv->v.arr.n : 6;
        if (t == GGUF_STRING) {
            const uint8_t *p = kv->v.arr.data;
            for (uint64_t i = 0; i < show; i++) {
                uint64_t n;
                memcpy(&n, p, 8);
                fputc(' ', fp);
                print_str(fp, (llc_str){(const char *)p + 8, n}, 24);
                p += 8 + n;
            }
        } else if (t != GGUF_ARRAY) {
            for (uint64_t i = 0; i < show; i++) fprintf(fp, " %g", llc_gguf_arr_num(kv, i));
        }
        if (show < kv->v.arr.n && t != GGUF_ARRAY) fputs(" …", fp);
        break;
    }
    default:
        if (is_signed_type(kv->type)) fprintf(fp, "%" PRId64, kv->v.i);
        else fprintf(fp, "%" PRIu64, kv->v.u);
    }
}

/* ---- writer ------------------------------------------------------------------------------------ */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void wb_put(wbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(wbuf *b, const char *s, uint64_t n) {
    wb_u64(b, n);
    wb_put(b, s, n);
}

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    const void *data;
    uint64_t nbytes, offset;
} wtensor;

struct llc_gguf_writer {
    wbuf kv;
    uint64_t n_kv;
    wtensor *tensors;
    uint64_t n_tensors, cap_tensors;
    uint64_t data_size;
    bool oom;
};

llc_gguf_writer *llc_gguf_writer_create(void) { return calloc(1, sizeof(llc_gguf_writer)); }

void llc_gguf_writer_free(llc_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv.p);
    free(w);
}

static void kv_head(llc_gguf_writer *w, const char *key, uint32_t type) {
    wb_str(&w->kv, key, strlen(key));
    wb_u32(&w->kv, type);
    w->n_kv++;
}
void llc_gguf_write_u32(llc_gguf_writer *w, const char *key, uint32_t v) { kv_head(w, key, GGUF_U32); wb_u32(&w->kv, v); }
void llc_gguf_write_i32(llc_gguf_writer *w, const char *key, int32_t v) { kv_head(w, key, GGUF_I32); wb_put(&w->kv, &v, 4); }
void llc_gguf_write_f32(llc_gguf_writer *w, const char *key, float v) { kv_head(w, key, GGUF_F32); wb_put(&w->kv, &v, 4); }
void llc_gguf_write_bool(llc_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    kv_head(w, key, GGUF_BOOL);
    wb_put(&w->kv, &b, 1);
}
void llc_gguf_write_str(llc_gguf_writer *w, const char *key, const char *v) { kv_head(w, key, GGUF_STRING); wb_str(&w->kv, v, strlen(v)); }

void llc_gguf_write_str_arr(llc_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n) {
    kv_head(w, key, GGUF_ARRAY);
    wb_u32(&w->kv, GGUF_STRING);
    wb_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) wb_str(&w->kv, strs[i], lens ? lens[i] : strlen(strs[i]));
}

void llc_gguf_write_arr(llc_gguf_writer *w, const char *key, uint32_t elem_type, const void *elems, uint64_t n) {
    kv_head(w, key, GGUF_ARRAY);
    wb_u32(&w->kv, elem_type);
    wb_u64(&w->kv, n);
    if (elem_type < GGUF_NTYPES && vtype_size[elem_type]) wb_put(&w->kv, elems, n * vtype_size[elem_type]);
}

void llc_gguf_writer_add_tensor(llc_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                            const void *data, uint64_t nbytes) {
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) {
            w->oom = true;
            return;
        }
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) w->oom = true;
    t->type = type;
    t->n_dims = (uint32_t)n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    t->offset = w->data_size;
    w->data_size += (nbytes + GGUF_DEFAULT_ALIGNMENT - 1) / GGUF_DEFAULT_ALIGNMENT * GGUF_DEFAULT_ALIGNMENT;
}

bool llc_gguf_writer_save(llc_gguf_writer *w, const char *path, llc_gguf_fill_fn fill, void *ctx, llamac_error *err) {
    wbuf h = {0};
    wb_put(&h, GGUF_MAGIC, 4);
    wb_u32(&h, 3);
    wb_u64(&h, w->n_tensors);
    wb_u64(&h, w->n_kv);
    wb_put(&h, w->kv.p, w->kv.n);
    for (uint64_t i = 0; w->tensors && i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        wb_str(&h, t->name ? t->name : "", t->name ? strlen(t->name) : 0);
        wb_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) wb_u64(&h, (uint64_t)t->ne[d]);
        wb_u32(&h, t->type);
        wb_u64(&h, t->offset);
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT] = {0};
    size_t pad = (GGUF_DEFAULT_ALIGNMENT - h.n % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT;
    wb_put(&h, zeros, pad);
    if (h.oom || w->kv.oom || w->oom) {
        free(h.p);
        return llc_fail(err, "%s: out of memory building the GGUF header", path);
    }
    llc_outfile out;
    if (!llc_outfile_open(&out, path, err)) {
        free(h.p);
        return false;
    }
    FILE *fp = out.f;
    bool ok = fwrite(h.p, 1, h.n, fp) == h.n;
    free(h.p);
    void *buf = NULL;
    for (uint64_t i = 0; ok && i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        const void *src = t->data;
        if (!src) {
            void *nb = fill ? realloc(buf, t->nbytes ? t->nbytes : 1) : NULL;
            if (!nb) {
                llc_outfile_abort(&out);
                free(buf);
                return llc_fail(err, "%s: no data for tensor %s", path, t->name);
            }
            buf = nb;
            if (!fill(ctx, i, buf, t->nbytes, err)) {
                llc_outfile_abort(&out);
                free(buf);
                return false;
            }
            src = buf;
        }
        ok = fwrite(src, 1, t->nbytes, fp) == t->nbytes;
        size_t tp = (GGUF_DEFAULT_ALIGNMENT - t->nbytes % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT;
        if (ok && tp) ok = fwrite(zeros, 1, tp, fp) == tp;
    }
    int e = errno;
    free(buf);
    if (!ok) {
        llc_fail(err, "%s: write failed: %s", path, strerror(e));
        llc_outfile_abort(&out);
        return false;
    }
    return llc_outfile_commit(&out, err);
}
