/*
 * llama2.c checkpoints (the legacy format of run.c): seven int32 — dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size (negative: the classifier is stored separately), seq_len — then f32 arrays
 * in a fixed order. The file carries no vocabulary and no norm epsilon (run.c uses 1e-5).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/types.h"
#include "model/model.h"

bool llc_model_load_llama2c(llamac_model *m, const char *path, llamac_error *err) {
    m->format = "llama2c";
    if (!llc_map_file(&m->map, path, err)) return false;
    if (m->map.size < 7 * sizeof(int32_t))
        return llc_fail(err, "%s: not a model file (too short for a GGUF or llama2.c header)", path);
    int32_t h[7];
    memcpy(h, m->map.data, sizeof h);
    /* export.py's newer versions (1: float32, 2: int8) start with this magic and a header of another
     * layout, which read as the legacy one would be nonsense. */
    if ((uint32_t)h[0] == 0x616b3432u)
        return llc_fail(err, "%s: a llama2.c version %d export (magic ak42) is not supported; llamac reads the legacy format (export.py --version 0)",
                        path, h[1]);
    llc_hparams *hp = &m->hp;
    bool shared = h[5] > 0;
    hp->dim = h[0];
    hp->ffn_dim = h[1];
    hp->n_layers = h[2];
    hp->n_heads = h[3];
    hp->n_kv_heads = h[4];
    hp->n_vocab = h[5] == INT32_MIN ? 0 : (h[5] < 0 ? -h[5] : h[5]);
    hp->n_ctx_train = h[6];
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    if (hp->n_heads > 0) hp->head_dim = hp->dim / hp->n_heads;
    hp->rope_dim = hp->head_dim;
    if (!llc_hparams_validate(hp, err) || (hp->n_ctx_train > (1 << 24) && llc_fail(err, "invalid sequence length %d", hp->n_ctx_train))) {
        llc_error_prefix(err, "%s: not a GGUF file, and its llama2.c header is invalid", path);
        return false;
    }
    uint64_t dim = (uint64_t)hp->dim, ffn = (uint64_t)hp->ffn_dim, L = (uint64_t)hp->n_layers, V = (uint64_t)hp->n_vocab;
    uint64_t kv_dim = (uint64_t)hp->n_kv_heads * (uint64_t)hp->head_dim, hs = (uint64_t)hp->head_dim;
    /* All products stay far below 2^64: every factor was bounded by the validation above. */
    uint64_t n_floats = V * dim + L * dim + L * dim * dim + 2 * L * dim * kv_dim + L * dim * dim + L * dim + 3 * L * ffn * dim +
                        dim + (uint64_t)hp->n_ctx_train * hs + (shared ? 0 : V * dim);
    uint64_t expect = 28 + 4 * n_floats;
    if (expect != m->map.size)
        return llc_fail(err, "%s: llama2.c header describes %" PRIu64 " bytes but the file has %zu (truncated or not a model)", path,
                        expect, m->map.size);
    const float *p = (const float *)(m->map.data + 28);
    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) return llc_fail(err, "out of memory");
    llc_bind_matrix(&m->tok_embd, p, LLC_F32, (int64_t)dim, (int64_t)V, "token_embedding_table", err);
    p += V * dim;
    for (uint64_t l = 0; l < L; l++) m->layers[l].attn_norm = p + l * dim;
    p += L * dim;
#define MATS(field, rows, cols)                                                                                       \
    for (uint64_t l = 0; l < L; l++)                                                                                  \
        llc_bind_matrix(&m->layers[l].field, p + l * (rows) * (cols), LLC_F32, (int64_t)(cols), (int64_t)(rows), #field, err); \
    p += L * (rows) * (cols);
    MATS(wq, dim, dim)
    MATS(wk, kv_dim, dim)
    MATS(wv, kv_dim, dim)
    MATS(wo, dim, dim)
    for (uint64_t l = 0; l < L; l++) m->layers[l].ffn_norm = p + l * dim;
    p += L * dim;
    MATS(w_gate, ffn, dim)
    MATS(w_down, dim, ffn)
    MATS(w_up, ffn, dim)
#undef MATS
    m->output_norm = p;
    p += dim;
    p += (uint64_t)hp->n_ctx_train * hs; /* freq_cis_real and _imag: RoPE tables, recomputed instead */
    if (shared) {
        m->output = m->tok_embd;
        m->tied = true;
    } else {
        llc_bind_matrix(&m->output, p, LLC_F32, (int64_t)dim, (int64_t)V, "wcls", err);
    }
    m->weight_bytes = m->map.size - 28;
    m->n_params = n_floats - (uint64_t)hp->n_ctx_train * hs;
    m->main_type = LLC_F32;
    return true;
}
