/*
 * llamac_model_synth: random weights with the exact shapes of a real model, for tests and benchmarks
 * where the real weights cannot be had (`llamac synth` names the shapes; this writes them). The
 * tensors are described as a writer source (model/model_writer.h) whose bytes are made on demand.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/outfile.h"
#include "model/model.h"
#include "model/model_writer.h"
#include "model/tensors.h"
#include "kernels/types.h"
#include "llamac.h"
#include "model/quant_mix.h"

/* What fills each tensor. */
typedef enum { K_MATRIX, K_EMBEDDING, K_NORM, K_ROPE } tensor_kind;

typedef struct synth {
    const llc_model_src *src;
    tensor_kind *kinds;
    uint64_t seed;
} synth;

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Matrices uniform with the variance of a standard init (1/fan_in), the embedding at unit scale (as
 * trained embeddings roughly are), norms near 1. Each tensor has its own stream derived from
 * (seed, index), so any tensor can be produced alone and files are reproducible. */
static bool fill(void *ctx, int index, void *dst, uint64_t nbytes, llamac_error *err) {
    const synth *sy = ctx;
    const llc_src_tensor *d = &sy->src->tensors[index];
    tensor_kind kind = sy->kinds[index];
    size_t rb = llc_row_size(d->type, d->cols);
    if (rb * (uint64_t)d->rows != nbytes) return llc_fail(err, "internal error: size of %s", d->name);
    if (kind == K_ROPE) {
        const llc_model_src *s = sy->src;
        llc_llama3_rope_factors(s->rope_theta, s->dim / s->n_heads, s->rope_factor, s->rope_low_freq_factor,
                                s->rope_high_freq_factor, s->rope_original_ctx, dst);
        return true;
    }
    float *row = malloc((size_t)d->cols * sizeof *row);
    if (!row) return llc_fail(err, "out of memory");
    float scale = kind == K_NORM ? 0.1f : kind == K_EMBEDDING ? 1.0f : (float)sqrt(3.0 / (double)d->cols);
    uint64_t state = mix64(sy->seed ^ mix64((uint64_t)index + 1));
    for (int64_t r = 0; r < d->rows; r++) {
        for (int64_t c = 0; c < d->cols; c++) {
            state = mix64(state);
            float u = (float)((double)(state >> 11) / 9007199254740992.0) * 2.0f - 1.0f; /* [-1, 1) */
            row[c] = kind == K_NORM ? 1.0f + scale * u : scale * u;
        }
        llc_type_get(d->type)->from_float(row, (char *)dst + (size_t)r * rb, d->cols);
    }
    free(row);
    return true;
}

/* Shapes a Llama can have; the limits keep a caller's typo from asking for terabytes. */
static bool check_shape(const llamac_synth_params *p, llamac_error *err) {
    if (p->n_layers < 1 || p->n_layers > 1024 || p->dim < 2 || p->dim > 65536 || p->n_heads < 1 || p->n_kv_heads < 1 ||
        p->ffn_dim < 1 || p->ffn_dim > 262144 || p->n_ctx_train < 1)
        return llc_fail(err, "llamac_model_synth: a shape out of range (layers %d, dim %d, heads %d/%d, ffn %d, ctx %d)", p->n_layers,
                        p->dim, p->n_heads, p->n_kv_heads, p->ffn_dim, p->n_ctx_train);
    if (p->dim % p->n_heads || (p->dim / p->n_heads) % 2 || p->n_heads % p->n_kv_heads)
        return llc_fail(err, "llamac_model_synth: dim %d, %d heads and %d key/value heads do not make even heads shared evenly", p->dim,
                        p->n_heads, p->n_kv_heads);
    if (!(p->rope_theta > 0) || !(p->rope_factor >= 0))
        return llc_fail(err, "llamac_model_synth: rope_theta must be positive and rope_factor 0 or more");
    return true;
}

bool llamac_model_synth(const char *path, const llamac_synth_params *p, llamac_error *err) {
    if (!path || !p || !p->tokenizer_path) return llc_fail(err, "llamac_model_synth: a path, parameters and a tokenizer are required");
    if (!check_shape(p, err)) return false;
    const char *format = p->format ? p->format : "gguf";
    bool (*write)(const llc_model_src *, const char *, llamac_error *) = NULL;
    if (!strcmp(format, "gguf")) write = llc_write_gguf_model;
    else if (!strcmp(format, "hf")) write = llc_write_hf_folder;
    else if (!strcmp(format, "meta")) write = llc_write_meta_folder;
    else return llc_fail(err, "llamac_model_synth: unknown format '%s' (gguf, hf, meta)", format);
    llc_quant_mix mix;
    const char *type = p->type ? p->type : "f32";
    if (!llc_quant_mix_parse(type, &mix)) return llc_fail(err, "unknown type '%s' (%s)", type, llc_quant_mix_names());
    /* a GGUF file or a folder of files, each written as base/outfile.h says; checked before any work */
    if (write == llc_write_gguf_model ? !llc_outfile_check(path, err) : !llc_outdir_prepare(path, false, err)) return false;
    llamac_tokenizer *tok = llamac_tokenizer_load(p->tokenizer_path, err);
    if (!tok) return false;

    int n_vocab = llamac_tokenizer_n_vocab(tok), head_dim = p->dim / p->n_heads;
    uint32_t t = mix.base; /* refined per tensor below */
    int cap = llc_tensor_refs_max(p->n_layers);
    llc_model_src src = {
        .name = p->name ? p->name : "synthetic Llama", .n_layers = p->n_layers, .dim = p->dim, .n_heads = p->n_heads,
        .n_kv_heads = p->n_kv_heads, .ffn_dim = p->ffn_dim, .n_vocab = n_vocab, .n_ctx_train = p->n_ctx_train, .rms_eps = 1e-5f,
        .rope_theta = p->rope_theta, .rope_factor = p->rope_factor, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
        .rope_original_ctx = 8192, .tied = p->tied, .instruct = p->instruct, .tok = tok, .tokenizer_file = p->tokenizer_path,
        .tensors = calloc((size_t)cap, sizeof(llc_src_tensor)), .fill = fill,
        .has_file_type = mix.file_type != LLC_FTYPE_NONE, .file_type = mix.file_type,
    };
    synth sy = {&src, calloc((size_t)cap, sizeof(tensor_kind)), p->seed};
    src.ctx = &sy;
    bool ok = false;
    if (!src.tensors || !sy.kinds) {
        llc_fail(err, "out of memory");
        goto done;
    }
    /* the shapes, from the parameters, in the tensor table's order (model/tensors.h) */
    const llc_hparams hp = {.n_layers = p->n_layers, .dim = p->dim, .n_heads = p->n_heads, .n_kv_heads = p->n_kv_heads,
                            .head_dim = head_dim, .ffn_dim = p->ffn_dim, .n_vocab = n_vocab, .rope_dim = head_dim};
    llc_tensor_ref *refs = malloc((size_t)cap * sizeof *refs);
    if (!refs) {
        llc_fail(err, "out of memory");
        goto done;
    }
    int n_refs = llc_tensor_refs(p->n_layers, p->tied, p->rope_factor > 0, refs);
    for (int i = 0; i < n_refs; i++) {
        const llc_tensor_desc *d = refs[i].d;
        llc_src_tensor *st = &src.tensors[src.n_tensors];
        llc_tensor_name(d, LLC_NAMES_GGUF, refs[i].layer, st->name, sizeof st->name);
        st->type = d->vector ? LLC_F32 : t; /* matrices refined below */
        st->cols = llc_extent_of(&hp, d->cols);
        st->rows = llc_extent_of(&hp, d->rows);
        sy.kinds[src.n_tensors++] = d == llc_t_tok_embd ? K_EMBEDDING : d == llc_t_rope_freqs ? K_ROPE : d->vector ? K_NORM : K_MATRIX;
    }
    free(refs);
    const llc_mix_model mm = {p->n_layers, p->n_heads, p->n_kv_heads, p->tied};
    for (int i = 0; i < src.n_tensors; i++) {
        llc_src_tensor *d = &src.tensors[i];
        if (sy.kinds[i] != K_MATRIX && sy.kinds[i] != K_EMBEDDING) continue;
        d->type = llc_quant_tensor_type(&mix, d->name, d->cols, d->rows, &mm);
        if (!llc_type_get(d->type) || !llc_type_get(d->type)->from_float) {
            llc_fail(err, "synth: %s: llamac cannot write %s tensors (not supported by this build)", d->name, llc_type_name(d->type));
            goto done;
        }
    }
    ok = write(&src, path, err);
done:
    llamac_tokenizer_free(tok);
    free(src.tensors);
    free(sy.kinds);
    return ok;
}
