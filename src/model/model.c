/* Model loading front door: picks the format by content, and the checks common to all formats. */
#include "model/model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <string.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "kernels/types.h"
#include "kv/kv_cache.h"
#include "model/tensors.h"

bool llc_hparams_validate(const llc_hparams *hp, llamac_error *err) {
    if (hp->n_layers < 1 || hp->n_layers > 1024) return llc_fail(err, "invalid layer count %d", hp->n_layers);
    if (hp->dim < 1 || hp->dim > 65536) return llc_fail(err, "invalid embedding size %d", hp->dim);
    if (hp->n_heads < 1 || hp->n_heads > 1024 || hp->dim % hp->n_heads != 0)
        return llc_fail(err, "head count %d does not divide the embedding size %d", hp->n_heads, hp->dim);
    if (hp->n_kv_heads < 1 || hp->n_kv_heads > hp->n_heads || hp->n_heads % hp->n_kv_heads != 0)
        return llc_fail(err, "KV head count %d does not divide the head count %d", hp->n_kv_heads, hp->n_heads);
    if (hp->head_dim % 2 != 0) return llc_fail(err, "head size %d is odd (RoPE rotates pairs)", hp->head_dim);
    if (hp->rope_dim < 2 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2 != 0)
        return llc_fail(err, "rope dimension count %d is invalid for head size %d", hp->rope_dim, hp->head_dim);
    if (hp->ffn_dim < 1 || hp->ffn_dim > (1 << 20)) return llc_fail(err, "invalid feed-forward size %d", hp->ffn_dim);
    if (hp->n_vocab < 1 || hp->n_vocab > (1 << 24)) return llc_fail(err, "invalid vocabulary size %d", hp->n_vocab);
    if (hp->n_ctx_train < 1) return llc_fail(err, "invalid context length %d", hp->n_ctx_train);
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1)) return llc_fail(err, "invalid RMS norm epsilon %g", hp->rms_eps);
    if (!(hp->rope_theta > 0 && hp->rope_theta < 1e12f)) return llc_fail(err, "invalid rope base %g", hp->rope_theta);
    return true;
}

bool llc_bind_matrix(llc_tensor *t, const void *data, uint32_t type, int64_t cols, int64_t rows, const char *name,
                     llamac_error *err) {
    const llc_type_traits *tt = llc_type_get(type);
    if (!tt) return llc_fail(err, "tensor %s has unsupported type %s", name, llc_type_name(type));
    if (cols % tt->block_size != 0)
        return llc_fail(err, "tensor %s: row length %" PRId64 " is not a multiple of the %s block size", name, cols, tt->name);
    t->data = data;
    t->type = type;
    t->n_cols = cols;
    t->n_rows = rows;
    t->row_bytes = llc_row_size(type, cols);
    return true;
}

const float *llc_bind_vector(llamac_model *m, const void *data, uint32_t type, int64_t n, uint64_t nbytes, llamac_error *err) {
    const llc_type_traits *tt = llc_type_get(type);
    if (!tt || !tt->to_float) {
        llc_fail(err, "unsupported type %s", llc_type_name(type));
        return NULL;
    }
    m->weight_bytes += nbytes;
    m->n_params += (uint64_t)n;
    bool aligned = (uintptr_t)data % 4 == 0;
    if (type == LLC_F32 && aligned) return data;
    float *f = llc_model_alloc(m, (size_t)n * sizeof *f, err);
    if (!f) return NULL;
    if (type == LLC_F32) {
        memcpy(f, data, (size_t)n * sizeof *f);
        return f;
    }
    if (!aligned) {
        void *tmp = llc_model_alloc(m, (size_t)nbytes, err);
        if (!tmp) return NULL;
        data = memcpy(tmp, data, (size_t)nbytes);
    }
    tt->to_float(data, f, n);
    return f;
}

void llc_llama3_rope_factors(float theta, int rope_dim, float factor, float low_freq_factor, float high_freq_factor,
                             int original_ctx, float *out) {
    double low_wl = original_ctx / (double)low_freq_factor, high_wl = original_ctx / (double)high_freq_factor;
    for (int i = 0; i < rope_dim / 2; i++) {
        double freq = pow((double)theta, -2.0 * i / rope_dim);
        double wl = 2 * 3.14159265358979323846 / freq;
        if (wl < high_wl) out[i] = 1.0f;
        else if (wl > low_wl) out[i] = factor;
        else {
            double smooth = (original_ctx / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

static void model_free_parts(llamac_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    for (int i = 0; i < m->n_maps; i++) llc_unmap_file(&m->maps[i]);
    free(m->maps);
    free(m->layers);
    llc_gguf_close(m->gguf);
    llc_unmap_file(&m->map);
    llamac_tokenizer_free(m->tok);
    if (m->packed_mem) munmap(m->packed_mem, m->packed_bytes);
    free(m->path);
    pthread_mutex_destroy(&m->pack_lock);
    free(m);
}

void *llc_model_alloc(llamac_model *m, size_t bytes, llamac_error *err) {
    void *p = malloc(bytes ? bytes : 1);
    void **owned = p ? realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned) : NULL;
    if (!owned) {
        free(p);
        llc_fail(err, "out of memory (%zu bytes)", bytes);
        return NULL;
    }
    m->owned = owned;
    m->owned[m->n_owned++] = p;
    return p;
}

const llc_mapped_file *llc_model_map(llamac_model *m, const char *path, llamac_error *err) {
    llc_mapped_file *maps = realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *maps);
    if (!maps) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    m->maps = maps;
    if (!llc_map_file(&m->maps[m->n_maps], path, err)) return NULL;
    return &m->maps[m->n_maps++];
}

static bool file_exists(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A Hugging Face folder has config.json; Meta's original one params.json (Hugging Face repositories
 * often carry Meta's files in original/, which is a folder of its own to point at). */
static bool load_folder(llamac_model *m, const char *dir, llamac_error *err) {
    if (file_exists(dir, "config.json")) return llc_model_load_hf(m, dir, err);
    if (file_exists(dir, "params.json")) return llc_model_load_meta(m, dir, err);
    return llc_fail(err, "%s: a folder without config.json (Hugging Face) or params.json (Meta)", dir);
}

llamac_model *llamac_model_load(const char *path, const llamac_model_params *params, llamac_error *err) {
    if (!path || !*path) {
        llc_fail(err, "no model file given");
        return NULL;
    }
    llamac_model *m = calloc(1, sizeof *m);
    if (!m) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->pack_lock, NULL);
    /* A tokenizer the caller names replaces the model's own, so it is loaded first: the format
     * loaders then leave theirs alone (and a broken one beside the weights cannot stop the load). */
    bool ok = true;
    if (params && params->tokenizer_path) {
        m->tok = llamac_tokenizer_load(params->tokenizer_path, err);
        if (!m->tok) {
            model_free_parts(m);
            return NULL;
        }
    }
    struct stat st;
    bool is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    if (is_dir) {
        ok = load_folder(m, path, err);
    } else {
        unsigned char magic[4] = {0};
        size_t got = 0;
        ok = llc_read_head(path, magic, 4, &got, err);
        if (ok && got == 4 && memcmp(magic, "GGUF", 4) == 0) ok = llc_model_load_gguf(m, path, err);
        else if (ok) ok = llc_model_load_llama2c(m, path, err);
        if (ok) m->path = realpath(path, NULL); /* NULL (out of memory): no packed cache, nothing else */
    }
    if (ok && !m->tok && is_dir) ok = llc_fail(err, "%s has no tokenizer: pass one with --tokenizer FILE", path);
    if (ok && !m->tok) {
        /* llama2.c checkpoints carry no vocabulary: look for tokenizer.bin beside the model, as run.c does. */
        char alt[4096];
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path + 1) : 0;
        snprintf(alt, sizeof alt, "%.*stokenizer.bin", dir_len, path);
        llamac_error e2 = {{0}};
        m->tok = llamac_tokenizer_load(alt, &e2);
        if (!m->tok) ok = llc_fail(err, "%s has no tokenizer: pass one with --tokenizer FILE", path);
    }
    /* As in llama.cpp, the vocabulary and the embedding must agree: a sampled id without a token,
     * or a token without an embedding row, is a broken or mismatched pair of files. */
    if (ok && llamac_tokenizer_n_vocab(m->tok) != m->hp.n_vocab)
        ok = llc_fail(err, "%s: the tokenizer has %d tokens but the model's embedding has %d rows (mismatched files?)", path,
                      llamac_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
    if (!ok) {
        model_free_parts(m);
        return NULL;
    }
    if (!m->name[0]) {
        const char *base = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", base ? base + 1 : path);
    }
    return m;
}

void llamac_model_free(llamac_model *m) { model_free_parts(m); }

const llamac_tokenizer *llamac_model_tokenizer(const llamac_model *m) { return m->tok; }

void llamac_model_get_info(const llamac_model *m, llamac_model_info *info) {
    memset(info, 0, sizeof *info);
    info->n_layers = m->hp.n_layers;
    info->dim = m->hp.dim;
    info->n_heads = m->hp.n_heads;
    info->n_kv_heads = m->hp.n_kv_heads;
    info->head_dim = m->hp.head_dim;
    info->ffn_dim = m->hp.ffn_dim;
    info->n_vocab = m->hp.n_vocab;
    info->n_ctx_train = m->hp.n_ctx_train;
    info->rope_dim = m->hp.rope_dim;
    info->rms_eps = m->hp.rms_eps;
    info->rope_theta = m->hp.rope_theta;
    info->has_rope_freqs = m->rope_freqs != NULL;
    info->tied_output = m->tied;
    info->format = m->format;
    info->name = m->name;
    info->weight_type = llc_type_name(m->main_type);
    info->weight_bytes = m->weight_bytes;
    info->n_params = m->n_params;
    llamac_tensor_info ti;
    for (int i = 0; llamac_model_tensor(m, i, &ti); i++) {
        if (i == 0) continue; /* token_embd: one row per token (unless it is also the output) */
        const llc_tensor *t = i == 1 ? &m->output : NULL;
        uint64_t bytes = t ? (uint64_t)t->row_bytes * (uint64_t)t->n_rows : ti.bytes;
        info->decode_bytes += bytes;
        info->matmul_macs += (uint64_t)ti.cols * (uint64_t)ti.rows;
    }
    info->default_temperature = m->default_temperature;
    info->default_top_p = m->default_top_p;
}

uint64_t llamac_model_kv_bytes(const llamac_model *m, int n_ctx, llamac_kv_type type) {
    int elem = llc_kv_elem_type(type);
    if (elem < 0 || n_ctx < 0) return 0;
    uint64_t row = llc_kv_row_bytes_of((enum llc_type)elem, m->hp.n_kv_heads * m->hp.head_dim);
    return 2ull * m->hp.n_layers * (uint64_t)n_ctx * row;
}

/* Tensor i of the public list: the whole-model matrices, then each layer's, in table order. */
static const llc_tensor *model_tensor_at(const llamac_model *m, int i, const llc_tensor_desc **desc, int *layer) {
    *layer = -1;
    for (int pass = 0; pass < 2; pass++)
        for (int l = 0; l < (pass ? m->hp.n_layers : 1); l++)
            for (int k = 0; k < llc_n_tensors; k++) {
                const llc_tensor_desc *d = &llc_tensors[k];
                if (d->vector || d->per_layer != (pass == 1) || i-- > 0) continue;
                *desc = d;
                *layer = pass ? l : -1;
                return llc_model_matrix(m, d, *layer);
            }
    return NULL;
}

int llamac_model_n_tensors(const llamac_model *m) {
    int n = 0;
    for (int k = 0; k < llc_n_tensors; k++)
        if (!llc_tensors[k].vector) n += llc_tensors[k].per_layer ? m->hp.n_layers : 1;
    return n;
}

bool llamac_model_tensor(const llamac_model *m, int i, llamac_tensor_info *out) {
    const llc_tensor_desc *d;
    int layer;
    if (i < 0) return false;
    const llc_tensor *t = model_tensor_at(m, i, &d, &layer);
    if (!t) return false;
    /* GGUF's names without the ".weight" */
    llc_tensor_name(d, LLC_NAMES_GGUF, layer, out->name, sizeof out->name);
    char *dot = strrchr(out->name, '.');
    if (dot) *dot = 0;
    out->type = llc_type_name(t->type);
    out->cols = t->n_cols;
    out->rows = t->n_rows;
    out->tied = i == 1 && m->tied;
    out->bytes = out->tied ? 0 : (uint64_t)t->row_bytes * (uint64_t)t->n_rows;
    return true;
}
