/* safetensors header parsing and validation (format: safetensors.h). */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "kernels/types.h"

/* cJSON spends about 64 bytes per value: a 100 MB header of "[0,0,0,…" would take gigabytes before
 * anything could be checked. Real headers hold about ten values per tensor and a few thousand tensors,
 * so this bound is far above any checkpoint and keeps the tree under ~150 MB. */
#define MAX_JSON_VALUES (2u << 20)

typedef struct dtype_info {
    const char *name;
    uint32_t size; /* bytes per element */
    int type;      /* llamac type, -1: parsed and size-checked, but not computed with */
} dtype_info;

/* Every dtype safetensors defines with a whole number of bytes per element. */
static const dtype_info dtypes[] = {
    {"F32", 4, LLC_F32}, {"F16", 2, LLC_F16}, {"BF16", 2, LLC_BF16}, {"F64", 8, -1},    {"I64", 8, -1},
    {"U64", 8, -1},      {"I32", 4, -1},      {"U32", 4, -1},        {"I16", 2, -1},    {"U16", 2, -1},
    {"I8", 1, -1},       {"U8", 1, -1},       {"BOOL", 1, -1},       {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1},
    {"F8_E8M0", 1, -1},
};

static const dtype_info *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dtypes[i].name, name)) return &dtypes[i];
    return NULL;
}

/* A non-negative integer that a double holds exactly (offsets and sizes of real files are far below 2^53). */
static bool json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || (double)(uint64_t)d != d) return false;
    *out = (uint64_t)d;
    return true;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const llc_st_tensor *)a)->name, ((const llc_st_tensor *)b)->name);
}

typedef struct span {
    uint64_t begin, end;
    int index;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

#define NAME_FMT "%.80s"

/* One header entry into t; names and ranges are checked by the caller. */
static bool parse_entry(const cJSON *e, uint64_t data_size, llc_st_tensor *t, uint64_t *begin, llamac_error *err) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return llc_fail(err, "tensor '" NAME_FMT "' is not a JSON object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return llc_fail(err, "tensor '" NAME_FMT "' has no dtype string", name);
    const dtype_info *di = find_dtype(dt->valuestring);
    if (!di)
        return llc_fail(err, "tensor '" NAME_FMT "' has unknown dtype '%.16s' (llamac reads F32, F16 and BF16)", name,
                        dt->valuestring);
    if (!cJSON_IsArray(shape)) return llc_fail(err, "tensor '" NAME_FMT "' has no shape array", name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > LLC_ST_MAX_DIMS) return llc_fail(err, "tensor '" NAME_FMT "' has %d dimensions (at most %d)", name, nd, LLC_ST_MAX_DIMS);
    uint64_t n = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *c = shape->child; c; c = c->next, d++) {
        uint64_t v;
        if (!json_u64(c, &v)) return llc_fail(err, "tensor '" NAME_FMT "' has an invalid dimension in its shape", name);
        t->shape[d] = (int64_t)v;
        if (v && n > UINT64_MAX / v) overflow = true;
        else n *= v;
    }
    if (overflow || n > UINT64_MAX / di->size)
        return llc_fail(err, "tensor '" NAME_FMT "' has a shape too large for any file", name);
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_u64(offs->child, &b) || !json_u64(offs->child->next, &en))
        return llc_fail(err, "tensor '" NAME_FMT "' has no valid data_offsets [begin, end]", name);
    if (b > en) return llc_fail(err, "tensor '" NAME_FMT "' has data_offsets [%" PRIu64 ", %" PRIu64 "] that end before they begin", name, b, en);
    if (en > data_size)
        return llc_fail(err, "tensor '" NAME_FMT "' has data_offsets [%" PRIu64 ", %" PRIu64 "] past the end of the data (%" PRIu64 " bytes)",
                        name, b, en, data_size);
    if (en - b != n * di->size)
        return llc_fail(err, "tensor '" NAME_FMT "' holds %" PRIu64 " bytes but its shape and dtype %s need %" PRIu64, name, en - b,
                        di->name, n * di->size);
    t->dtype = di->name;
    t->type = di->type;
    t->n_dims = nd;
    t->n_elements = n;
    t->nbytes = en - b;
    *begin = b;
    return true;
}

bool llc_safetensors_parse(const uint8_t *data, size_t size, llc_safetensors *out, llamac_error *err) {
    memset(out, 0, sizeof *out);
    if (size < 8) return llc_fail(err, "too short for a safetensors file (%zu bytes)", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    if (hlen > LLC_ST_MAX_HEADER)
        return llc_fail(err, "safetensors header length %" PRIu64 " is over the %u-byte limit", hlen, LLC_ST_MAX_HEADER);
    if (hlen > size - 8)
        return llc_fail(err, "safetensors header length %" PRIu64 " runs past the end of the file (%zu bytes)", hlen, size);
    const char *h = (const char *)data + 8;
    if (hlen < 2 || h[0] != '{') return llc_fail(err, "safetensors header is not a JSON object");
    /* The writer may pad the header with spaces (so the data section is aligned): whitespace after the
     * object is fine, anything else is refused by the parser. */
    cJSON *root = llc_json_parse_opts(h, (size_t)hlen, "safetensors header", 0, MAX_JSON_VALUES, err);
    if (!root) return false;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llc_fail(err, "safetensors header is not a JSON object");
    }
    bool ok = true;

    uint64_t data_size = size - 8 - hlen;
    size_t n = 0, pool = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        n++;
        pool += strlen(e->string) + 1;
    }
    span *spans = malloc((n ? n : 1) * sizeof *spans);
    out->tensors = calloc(n ? n : 1, sizeof *out->tensors);
    out->names = malloc(pool ? pool : 1);
    if (!spans || !out->tensors || !out->names) {
        ok = llc_fail(err, "out of memory for %zu tensors", n);
        goto done;
    }
    char *np = out->names;
    int i = 0;
    for (const cJSON *e = root->child; e && ok; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        llc_st_tensor *t = &out->tensors[i];
        uint64_t begin = 0;
        if (!parse_entry(e, data_size, t, &begin, err)) {
            ok = false;
            break;
        }
        size_t len = strlen(e->string) + 1;
        memcpy(np, e->string, len);
        t->name = np;
        np += len;
        t->data = data + 8 + hlen + begin;
        spans[i] = (span){begin, begin + t->nbytes, i};
        i++;
    }
    if (!ok) goto done;
    out->n_tensors = (int)n;
    out->data_offset = 8 + hlen;

    /* No two tensors may share a byte: a writer never does that, and aliasing would let one hostile
     * entry stand for another. Empty tensors occupy nothing. */
    qsort(spans, n, sizeof *spans, cmp_span);
    uint64_t reach = 0;
    int reach_i = -1;
    for (size_t k = 0; k < n && ok; k++) {
        if (spans[k].begin == spans[k].end) continue;
        if (reach_i >= 0 && spans[k].begin < reach)
            ok = llc_fail(err, "tensors '" NAME_FMT "' and '" NAME_FMT "' overlap in the data section",
                          out->tensors[reach_i].name, out->tensors[spans[k].index].name);
        reach = spans[k].end;
        reach_i = spans[k].index;
    }
    /* sorted for llc_safetensors_find; names are unique, the parser refused duplicate keys */
    if (ok) qsort(out->tensors, n, sizeof *out->tensors, cmp_name);
done:
    free(spans);
    cJSON_Delete(root);
    if (!ok) llc_safetensors_free(out);
    return ok;
}

void llc_safetensors_free(llc_safetensors *st) {
    free(st->tensors);
    free(st->names);
    memset(st, 0, sizeof *st);
}

const llc_st_tensor *llc_safetensors_find(const llc_safetensors *st, const char *name) {
    size_t lo = 0, hi = (size_t)st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- writer ---------------------------------------------------------------------------------------- */

static const char *st_dtype(uint32_t type) {
    switch (type) {
    case LLC_F32: return "F32";
    case LLC_F16: return "F16";
    case LLC_BF16: return "BF16";
    default: return NULL;
    }
}

/* Wider elements first, then by name, as the safetensors library orders a file. */
static int cmp_layout(const void *a, const void *b) {
    const llc_st_out *x = *(const llc_st_out *const *)a, *y = *(const llc_st_out *const *)b;
    size_t wx = llc_row_size(x->type, 1), wy = llc_row_size(y->type, 1);
    if (wx != wy) return wx > wy ? -1 : 1;
    return strcmp(x->name, y->name);
}

bool llc_safetensors_write(FILE *f, const char *path, const llc_st_out *t, int n, llc_st_bytes_fn bytes, void *ctx,
                           llamac_error *err) {
    for (int i = 0; i < n; i++)
        if (!st_dtype(t[i].type)) return llc_fail(err, "%s: tensor %s: safetensors holds F32, F16 or BF16 here", path, t[i].name);
    const llc_st_out **sel = malloc((n > 0 ? (size_t)n : 1) * sizeof *sel);
    if (!sel) return llc_fail(err, "out of memory");
    for (int i = 0; i < n; i++) sel[i] = &t[i];
    qsort(sel, (size_t)n, sizeof *sel, cmp_layout);

    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, sel[i]->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype(sel[i]->type));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        if (sel[i]->rows > 1) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)sel[i]->rows));
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)sel[i]->cols));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + sel[i]->nbytes)));
        off += sel[i]->nbytes;
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) {
        free(sel);
        return llc_fail(err, "out of memory");
    }
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    uint8_t hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = true;
    if (fwrite(hl, 1, 8, f) != 8 || fwrite(text, 1, len, f) != len) ok = llc_fail(err, "%s: write failed: %s", path, strerror(errno));
    for (size_t i = len; ok && i < padded; i++)
        if (fputc(' ', f) == EOF) ok = llc_fail(err, "%s: write failed: %s", path, strerror(errno));
    cJSON_free(text);
    for (int i = 0; ok && i < n; i++) {
        const llc_st_out *x = sel[i];
        uint8_t *buf = malloc(x->nbytes ? (size_t)x->nbytes : 1);
        if (!buf) {
            ok = llc_fail(err, "out of memory for tensor %s (%" PRIu64 " bytes)", x->name, x->nbytes);
            break;
        }
        ok = bytes(ctx, (int)(x - t), buf, x->nbytes, err);
        if (ok && fwrite(buf, 1, (size_t)x->nbytes, f) != x->nbytes) ok = llc_fail(err, "%s: write failed: %s", path, strerror(errno));
        free(buf);
    }
    free(sel);
    return ok;
}
