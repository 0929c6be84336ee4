/*
 * A loaded model described as a writer source (model/model_writer.h): what `convert` writes out.
 * Matrices are re-encoded row by row (dequantize, then quantize to the target type), q/k rows of
 * Hugging Face checkpoints are put back in GGUF's adjacent-pair RoPE order, and rope scaling is
 * carried as rope_freqs.weight.
 */
#include "model/model_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/types.h"
#include "model/tensors.h"

typedef struct export_entry {
    const llc_tensor *matrix; /* NULL for vectors */
    const float *vector;
    bool rope_rows;           /* q or k of a half-split checkpoint: rows to reorder */
} export_entry;

typedef struct export_ctx {
    const llamac_model *m;
    const llc_model_src *src;
    export_entry *e;
    llc_pool *pool;
} export_ctx;

/* Row r of the GGUF layout is row half_split_row(r) of the Hugging Face layout: within each head,
 * GGUF interleaves the two halves that HF keeps apart (the inverse of llama.cpp's permute). */
static int64_t half_split_row(int64_t r, int head_dim) {
    int64_t h = r / head_dim, k = r % head_dim;
    return h * head_dim + (k % 2) * (head_dim / 2) + k / 2;
}

/* One tensor's rows re-encoded, split across the pool's threads (each with its own row of floats). */
typedef struct rows_job {
    const export_ctx *x;
    const export_entry *e;
    const llc_src_tensor *t;
    char *dst;
    size_t rb;
    float *rows; /* nth rows of t->cols floats */
} rows_job;

static void encode_rows(void *ctx, int ith, int nth) {
    const rows_job *j = ctx;
    float *row = j->rows + (size_t)ith * (size_t)j->t->cols;
    void (*from_float)(const float *, void *, int64_t) = llc_type_get(j->t->type)->from_float;
    long lo, hi;
    llc_split((long)j->t->rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t from = j->e->rope_rows ? half_split_row(r, j->x->m->hp.head_dim) : r;
        llc_tensor_get_row(j->e->matrix, from, row);
        from_float(row, j->dst + (size_t)r * j->rb, j->t->cols);
    }
}

static bool export_fill(void *ctx, int i, void *dst, uint64_t nbytes, llamac_error *err) {
    const export_ctx *x = ctx;
    const export_entry *e = &x->e[i];
    const llc_src_tensor *t = &x->src->tensors[i];
    size_t rb = llc_row_size(t->type, t->cols);
    if (rb * (uint64_t)t->rows != nbytes) return llc_fail(err, "internal error: size of %s", t->name);
    if (!e->matrix) {
        memcpy(dst, e->vector, nbytes);
        return true;
    }
    const llc_tensor *w = e->matrix;
    if (w->type == t->type && !e->rope_rows) {
        memcpy(dst, w->data, nbytes);
        return true;
    }
    int nth = x->pool ? llc_pool_size(x->pool) : 1;
    rows_job j = {x, e, t, dst, rb, malloc((size_t)nth * (size_t)t->cols * sizeof(float))};
    if (!j.rows) return llc_fail(err, "out of memory");
    if (x->pool) llc_pool_run(x->pool, encode_rows, &j);
    else encode_rows(&j, 0, 1);
    free(j.rows);
    return true;
}

bool llc_model_export(const llamac_model *m, const llc_quant_mix *mix, llc_pool *pool, llc_model_src *out,
                      llamac_error *err) {
    const llc_hparams *hp = &m->hp;
    const llc_mix_model mm = {hp->n_layers, hp->n_heads, hp->n_kv_heads, m->tied};
    if (m->rope_half_split && hp->rope_dim != hp->head_dim)
        return llc_fail(err, "partial rotary dimensions with the half-split layout are not supported");
    int cap = llc_tensor_refs_max(hp->n_layers);
    memset(out, 0, sizeof *out);
    out->tensors = calloc((size_t)cap, sizeof *out->tensors);
    export_ctx *x = calloc(1, sizeof *x);
    export_entry *e = calloc((size_t)cap, sizeof *e);
    if (!out->tensors || !x || !e) {
        free(out->tensors);
        free(x);
        free(e);
        return llc_fail(err, "out of memory");
    }
    x->m = m;
    x->src = out;
    x->e = e;
    x->pool = pool;
    out->name = m->name;
    out->n_layers = hp->n_layers;
    out->dim = hp->dim;
    out->n_heads = hp->n_heads;
    out->n_kv_heads = hp->n_kv_heads;
    out->ffn_dim = hp->ffn_dim;
    out->n_vocab = hp->n_vocab;
    out->n_ctx_train = hp->n_ctx_train;
    out->rms_eps = hp->rms_eps;
    out->rope_theta = hp->rope_theta;
    out->tied = m->tied;
    out->tok = m->tok;
    out->has_file_type = mix && mix->file_type != LLC_FTYPE_NONE;
    out->file_type = out->has_file_type ? mix->file_type : 0;
    out->fill = export_fill;
    out->ctx = x;
    bool ok = true;
    int n = 0;
    llc_tensor_ref *refs = malloc((size_t)cap * sizeof *refs);
    if (!refs) ok = llc_fail(err, "out of memory");
    int n_refs = refs ? llc_tensor_refs(hp->n_layers, m->tied, m->rope_freqs != NULL, refs) : 0;
    for (int i = 0; i < n_refs && ok; i++, n++) {
        const llc_tensor_desc *d = refs[i].d;
        llc_src_tensor *t = &out->tensors[n];
        llc_tensor_name(d, LLC_NAMES_GGUF, refs[i].layer, t->name, sizeof t->name);
        if (d->vector) {
            t->type = LLC_F32;
            t->cols = llc_extent_of(hp, d->cols);
            t->rows = 1;
            e[n].vector = *llc_model_vector(m, d, refs[i].layer);
            continue;
        }
        const llc_tensor *w = llc_model_matrix(m, d, refs[i].layer);
        t->cols = w->n_cols;
        t->rows = w->n_rows;
        t->type = mix ? llc_quant_tensor_type(mix, t->name, t->cols, t->rows, &mm) : w->type;
        e[n].matrix = w;
        e[n].rope_rows = d->rope_rows && m->rope_half_split;
        const llc_type_traits *tt = llc_type_get(t->type);
        if ((t->type != w->type || e[n].rope_rows) && (!tt || !tt->from_float))
            ok = llc_fail(err, "%s: llamac cannot write %s tensors (not supported by this build)", t->name, llc_type_name(t->type));
        else if (t->cols % tt->block_size != 0)
            ok = llc_fail(err, "%s: rows of %lld values cannot be stored as %s (blocks of %d)", t->name, (long long)t->cols,
                          llc_type_name(t->type), tt->block_size);
    }
    free(refs);
    out->n_tensors = n;
    if (!ok) llc_model_export_free(out);
    return ok;
}

void llc_model_export_free(llc_model_src *src) {
    export_ctx *x = src->ctx;
    if (x) free(x->e);
    free(x);
    free(src->tensors);
    memset(src, 0, sizeof *src);
}
