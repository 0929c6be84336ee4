/*
 * The public face of writing a model (llamac_model_save: what `convert` and `quantize` do) and of the
 * file facts `info` shows (llamac_model_file_type, llamac_model_type_mix). Thin wrappers: the export
 * is model/model_export.c, the mixes model/quant_mix.c, the GGUF writer formats/model_writer_gguf.c.
 */
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/threadpool.h"
#include "kernels/types.h"
#include "llamac.h"
#include "model/model.h"
#include "model/model_export.h"
#include "model/quant_mix.h"

bool llamac_save_type_known(const char *type) {
    llc_quant_mix mix;
    return type && llc_quant_mix_parse(type, &mix);
}

const char *llamac_save_type_names(void) { return llc_quant_mix_names(); }

/* Wraps the export's fill to report each finished tensor to the caller. */
typedef struct save_progress {
    bool (*fill)(void *, int, void *, uint64_t, llamac_error *);
    void *ctx;
    const llc_model_src *src;
    const llamac_save_params *params;
    uint64_t done, total;
} save_progress;

static bool fill_reporting(void *ctx, int i, void *dst, uint64_t nbytes, llamac_error *err) {
    save_progress *p = ctx;
    if (!p->fill(p->ctx, i, dst, nbytes, err)) return false;
    p->done += nbytes;
    const llc_src_tensor *t = &p->src->tensors[i];
    llamac_tensor_info ti;
    memset(&ti, 0, sizeof ti);
    snprintf(ti.name, sizeof ti.name, "%s", t->name); /* both 64 bytes: never cut */
    ti.type = llc_type_name(t->type);
    ti.cols = t->cols;
    ti.rows = t->rows;
    ti.bytes = nbytes;
    if (!p->params->progress(p->params->user, &ti, p->done, p->total)) return llc_fail(err, "cancelled");
    return true;
}

bool llamac_model_save(const llamac_model *m, const char *path, const llamac_save_params *params, llamac_save_stats *stats,
                       llamac_error *err) {
    static const llamac_save_params none = {0};
    if (!params) params = &none;
    if (stats) memset(stats, 0, sizeof *stats);
    if (!m || !path) return llc_fail(err, "llamac_model_save: a model and a path are required");
    if (params->format && strcmp(params->format, "gguf") != 0)
        return llc_fail(err, "llamac_model_save: unknown format '%s' (gguf)", params->format);
    if (params->n_threads < 0) return llc_fail(err, "llamac_model_save: n_threads %d is negative", params->n_threads);
    llc_quant_mix mix;
    if (params->type && !llc_quant_mix_parse(params->type, &mix))
        return llc_fail(err, "unknown type '%s' (%s)", params->type, llc_quant_mix_names());
    int n_threads = params->n_threads > 0 ? params->n_threads : llc_n_cores();
    llc_pool *pool = n_threads > 1 ? llc_pool_create(n_threads) : NULL;
    n_threads = pool ? llc_pool_size(pool) : 1;
    llc_model_src src;
    if (!llc_model_export(m, params->type ? &mix : NULL, pool, &src, err)) {
        llc_pool_free(pool);
        return false;
    }
    save_progress p = {src.fill, src.ctx, &src, params, 0, 0};
    uint64_t n_elements = 0;
    for (int i = 0; i < src.n_tensors; i++) {
        p.total += llc_row_size(src.tensors[i].type, src.tensors[i].cols) * (uint64_t)src.tensors[i].rows;
        n_elements += (uint64_t)src.tensors[i].cols * (uint64_t)src.tensors[i].rows;
    }
    if (params->progress) {
        src.fill = fill_reporting;
        src.ctx = &p;
    }
    /* written beside the output and renamed when complete (base/outfile.h), so the output may replace
     * the (mapped) input */
    bool ok = llc_write_gguf_model(&src, path, err);
    if (ok && stats) {
        stats->n_tensors = src.n_tensors;
        stats->bytes = p.total;
        stats->n_elements = n_elements;
        stats->n_threads = n_threads;
        stats->file_type = params->type && mix.file_type != LLC_FTYPE_NONE ? llc_file_type_name(mix.file_type) : NULL;
    }
    src.fill = p.fill;
    src.ctx = p.ctx;
    llc_model_export_free(&src);
    llc_pool_free(pool);
    return ok;
}

int llamac_model_file_type(const llamac_model *m, const char **name) {
    uint32_t ft;
    llamac_error ignored;
    if (name) *name = NULL;
    /* only GGUF records one; a missing key is "none", not an error */
    if (!m->gguf || !llc_gguf_get_u32(m->gguf, "general.file_type", &ft, &ignored) || ft > INT32_MAX) return -1;
    if (name) *name = llc_file_type_name(ft);
    return (int)ft;
}

_Static_assert(LLC_TYPE_COUNT + 1 <= 64, "llamac.h promises 64 type shares suffice");

static void share_add(llamac_type_share *x, int *n, const char *type, uint64_t bytes, uint64_t elements) {
    int k = 0;
    while (k < *n && strcmp(x[k].type, type) != 0) k++;
    if (k == *n) {
        if (*n == LLC_TYPE_COUNT + 1) return; /* cannot happen: every name is one of the types */
        x[(*n)++] = (llamac_type_share){type, 0, 0, 0};
    }
    x[k].n_tensors++;
    x[k].bytes += bytes;
    x[k].n_elements += elements;
}

int llamac_model_type_mix(const llamac_model *m, llamac_type_share *out, int cap) {
    llamac_type_share x[LLC_TYPE_COUNT + 1];
    int n = 0;
    if (m->gguf) {
        for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
            const llc_gguf_tensor *t = &m->gguf->tensors[i];
            uint64_t e = 1;
            for (int d = 0; d < 4; d++) e *= (uint64_t)t->ne[d];
            share_add(x, &n, llc_type_name(t->type), t->nbytes, e);
        }
    } else {
        /* the matrices as loaded plus the norms (and rope_freqs), which llamac keeps in f32 */
        llamac_tensor_info ti;
        for (int i = 0; llamac_model_tensor(m, i, &ti); i++)
            if (!ti.tied) share_add(x, &n, ti.type, ti.bytes, (uint64_t)ti.cols * (uint64_t)ti.rows);
        const llc_hparams *hp = &m->hp;
        for (int i = 0; i < 1 + 2 * hp->n_layers; i++) share_add(x, &n, "f32", 4ull * (uint64_t)hp->dim, (uint64_t)hp->dim);
        if (m->rope_freqs) share_add(x, &n, "f32", 4ull * (uint64_t)(hp->rope_dim / 2), (uint64_t)(hp->rope_dim / 2));
    }
    /* the biggest share of bytes first; equal shares in the order met */
    for (int a = 0; a < n; a++) {
        int best = a;
        for (int b = a + 1; b < n; b++)
            if (x[b].bytes > x[best].bytes) best = b;
        llamac_type_share t = x[best];
        memmove(&x[a + 1], &x[a], (size_t)(best - a) * sizeof x[0]);
        x[a] = t;
    }
    for (int k = 0; k < n && k < cap; k++) out[k] = x[k];
    return n;
}
