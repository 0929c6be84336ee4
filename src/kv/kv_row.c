/*
 * The KV cache's row format (see kv_row.h): the element types, writing a position's rows, and the
 * views attention reads.
 */
#include "kv/kv_row.h"

#include <strings.h>

#include "base/error.h"
#include "kv/kv_cache.h"

/* ---- element types ---- */

static const char *const kv_type_names[] = {"f32", "f16", "bf16", "q8_0"};
static const enum llc_type kv_elem_types[] = {LLC_F32, LLC_F16, LLC_BF16, LLC_Q8_0};

int llamac_kv_type_from_name(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (strcasecmp(name, kv_type_names[i]) == 0) return i;
    return -1;
}

const char *llamac_kv_type_name(llamac_kv_type type) {
    return (unsigned)type < 4 ? kv_type_names[type] : "?";
}

int llc_kv_elem_type(llamac_kv_type t) { return (unsigned)t < 4 ? (int)kv_elem_types[t] : -1; }

size_t llc_kv_row_bytes_of(enum llc_type type, int kv_dim) {
    if (kv_dim <= 0 || (type != LLC_F32 && type != LLC_F16 && type != LLC_BF16 && type != LLC_Q8_0)) return 0;
    return llc_row_size(type, kv_dim);
}

bool llc_kv_check_type(enum llc_type type, int kv_dim, llamac_error *err) {
    if (llc_kv_row_bytes_of(type, kv_dim) != 0) return true;
    if (type == LLC_Q8_0 && kv_dim > 0)
        return llc_fail(err, "KV cache type q8_0 needs rows (n_kv_heads x head_dim = %d) that are a multiple of %d", kv_dim,
                        QK8_0);
    return llc_fail(err, "KV cache: element type %s is not one of f32, f16, bf16, q8_0", llc_type_name(type));
}

int llc_kv_elem_type_for(llamac_kv_type t, int kv_dim, llamac_error *err) {
    int elem = llc_kv_elem_type(t);
    if (elem < 0) {
        llc_fail(err, "unknown KV cache type %d (f32, f16, bf16, q8_0)", (int)t);
        return -1;
    }
    return llc_kv_check_type((enum llc_type)elem, kv_dim, err) ? elem : -1;
}

/* ---- rows in, views out ---- */

void llc_kv_store(llc_kv_pool *p, int layer, const int32_t *blocks, int pos, const float *k, const float *v) {
    size_t bs = (size_t)llc_kv_block_size(p), row_bytes = llc_kv_row_bytes(p);
    size_t at = ((size_t)blocks[(size_t)pos / bs] * bs + (size_t)pos % bs) * row_bytes;
    void (*to_row)(const float *, void *, int64_t) = llc_type_get(llc_kv_type(p))->from_float;
    /* f32: copied; the other types are rounded here, once */
    to_row(k, (unsigned char *)llc_kv_k_base(p, layer) + at, llc_kv_dim(p));
    to_row(v, (unsigned char *)llc_kv_v_base(p, layer) + at, llc_kv_dim(p));
}

llc_kv_view llc_kv_layer_view(const llc_kv_pool *p, int layer, const int32_t *blocks, int n_blocks, int head_dim,
                              const void **kp, const void **vp) {
    size_t bs = (size_t)llc_kv_block_size(p), row_bytes = llc_kv_row_bytes(p);
    size_t block_bytes = bs * row_bytes;
    const unsigned char *kb = llc_kv_k_base(p, layer), *vb = llc_kv_v_base(p, layer);
    for (int i = 0; i < n_blocks; i++) {
        kp[i] = kb + (size_t)blocks[i] * block_bytes;
        vp[i] = vb + (size_t)blocks[i] * block_bytes;
    }
    /* the view counts elements: rows kv_dim elements apart, heads head_dim apart in a row */
    return (llc_kv_view){kp, vp, (int)bs, (size_t)llc_kv_dim(p), (size_t)head_dim, llc_kv_type(p)};
}
