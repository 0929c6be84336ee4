/*
 * llamac synth: a GGUF with random weights and the exact shapes of a real model, for tests and
 * benchmarks where the real weights cannot be had. The Llama 3 vocabulary is copied from a
 * tokenizer.json, so the file tokenizes and runs like the real thing (in llama.cpp too).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "formats/gguf.h"
#include "kernels/types.h"
#include "tokenizer/tokenizer.h"

typedef struct preset {
    const char *name, *title;
    int n_layers, dim, n_heads, n_kv_heads, ffn_dim, n_ctx;
    bool tied;
    float rope_theta, rope_factor; /* llama3 rope scaling factor; 0: none */
} preset;

static const preset presets[] = {
    {"tiny", "synthetic tiny Llama 3", 2, 128, 4, 2, 320, 131072, true, 500000.0f, 32.0f},
    {"llama-3.2-1b", "synthetic Llama-3.2-1B", 16, 2048, 32, 8, 8192, 131072, true, 500000.0f, 32.0f},
    {"llama-3.2-3b", "synthetic Llama-3.2-3B", 28, 3072, 24, 8, 8192, 131072, true, 500000.0f, 32.0f},
    {"llama-3.1-8b", "synthetic Llama-3.1-8B", 32, 4096, 32, 8, 14336, 131072, false, 500000.0f, 8.0f},
};

static const char usage_text[] =
    "usage: llamac synth --preset NAME -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0] [--seed S] [--vocab tokenizer.json]\n"
    "  presets: tiny, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b\n"
    "  --vocab   Llama 3 tokenizer.json (default ../shared/models/llama3-tokenizer/tokenizer.json)\n";

/* One tensor to write: what it is and how it is filled. */
typedef enum { K_MATRIX, K_EMBEDDING, K_NORM, K_ROPE } tensor_kind;
typedef struct tdesc {
    char name[48];
    tensor_kind kind;
    uint32_t type;
    int64_t cols, rows;
} tdesc;

typedef struct synth {
    const preset *p;
    uint64_t seed;
    tdesc *t;
    int n;
} synth;

/* Llama 3.1's rope scaling as Meta's reference code applies it: long wavelengths are slowed down by
 * the factor, short ones kept, the band between interpolated. Stored as divisors (rope_freqs). */
static void llama3_rope_factors(const preset *p, float *out) {
    int head_dim = p->dim / p->n_heads;
    const double low_ff = 1.0, high_ff = 4.0, old_ctx = 8192.0;
    double low_wl = old_ctx / low_ff, high_wl = old_ctx / high_ff;
    for (int i = 0; i < head_dim / 2; i++) {
        double freq = pow((double)p->rope_theta, -2.0 * i / head_dim);
        double wl = 2 * 3.14159265358979323846 / freq;
        if (wl < high_wl) out[i] = 1.0f;
        else if (wl > low_wl) out[i] = p->rope_factor;
        else {
            double smooth = (old_ctx / wl - low_ff) / (high_ff - low_ff);
            out[i] = (float)(1.0 / ((1 - smooth) / p->rope_factor + smooth));
        }
    }
}

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fills tensor index: matrices uniform with the variance of a standard init (1/fan_in), the
 * embedding at unit scale (as trained embeddings roughly are), norms near 1. Each tensor has its own
 * stream derived from (seed, index), so any tensor can be produced alone and files are reproducible. */
static bool fill(void *ctx, uint64_t index, void *dst, uint64_t nbytes, llamac_error *err) {
    const synth *sy = ctx;
    const tdesc *d = &sy->t[index];
    size_t rb = llc_row_size(d->type, d->cols);
    if (rb * (uint64_t)d->rows != nbytes) return llc_fail(err, "internal error: size of %s", d->name);
    if (d->kind == K_ROPE) {
        llama3_rope_factors(sy->p, dst);
        return true;
    }
    float *row = malloc((size_t)d->cols * sizeof *row);
    if (!row) return llc_fail(err, "out of memory");
    float scale = d->kind == K_NORM ? 0.1f : d->kind == K_EMBEDDING ? 1.0f : (float)sqrt(3.0 / (double)d->cols);
    uint64_t state = mix(sy->seed ^ mix(index + 1));
    for (int64_t r = 0; r < d->rows; r++) {
        for (int64_t c = 0; c < d->cols; c++) {
            state = mix(state);
            float u = (float)((double)(state >> 11) / 9007199254740992.0) * 2.0f - 1.0f; /* [-1, 1) */
            row[c] = d->kind == K_NORM ? 1.0f + scale * u : scale * u;
        }
        llc_type_get(d->type)->from_float(row, (char *)dst + (size_t)r * rb, d->cols);
    }
    free(row);
    return true;
}

static int file_type_of(uint32_t t) {
    switch (t) {
    case LLC_F32: return 0;
    case LLC_F16: return 1;
    case LLC_Q4_0: return 2;
    case LLC_Q8_0: return 7;
    case LLC_BF16: return 32;
    default: return 0;
    }
}

int cmd_synth(int argc, char **argv) {
    const char *preset_name = NULL, *out = NULL, *type_name = "f32", *vocab = NULL, *v;
    uint64_t seed = 1;
    cli_args a = {argc, 1, argv, false};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(o, "--preset")) {
            if (!(preset_name = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "-o") || !strcmp(o, "--output")) {
            if (!(out = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--type")) {
            if (!(type_name = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--vocab")) {
            if (!(vocab = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--seed") || !strcmp(o, "-s")) {
            if (!(v = cli_value(&a, o)) || !cli_u64(o, v, &seed)) return 2;
        } else {
            return cli_usage("synth: unknown option '%s'", o);
        }
    }
    if (!preset_name || !out) return cli_usage("synth: --preset NAME and -o OUT.gguf are required");
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, preset_name)) p = &presets[i];
    if (!p) return cli_usage("synth: unknown preset '%s' (tiny, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b)", preset_name);
    int type = llc_type_from_name(type_name);
    if (type < 0 || !llc_type_get((uint32_t)type)->from_float)
        return cli_usage("synth: unknown --type '%s' (f32, f16, bf16, q8_0, q4_0)", type_name);
    char default_vocab[4096];
    if (!vocab) {
        const char *shared = getenv("LLAMAC_SHARED");
        snprintf(default_vocab, sizeof default_vocab, "%s/models/llama3-tokenizer/tokenizer.json", shared ? shared : "../shared");
        vocab = default_vocab;
    }
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llamac_tokenizer_load(vocab, &err);
    if (!tok) return cli_error("%s", err.message);

    int n_vocab = llamac_tokenizer_n_vocab(tok);
    int head_dim = p->dim / p->n_heads, kv_dim = p->n_kv_heads * head_dim;
    uint32_t t = (uint32_t)type;
    synth sy = {p, seed, calloc((size_t)(4 + 9 * p->n_layers), sizeof(tdesc)), 0};
    gguf_writer *w = gguf_writer_create();
    if (!w || !sy.t) {
        llamac_tokenizer_free(tok);
        gguf_writer_free(w);
        free(sy.t);
        return cli_error("out of memory");
    }
#define ADD(kd, tp, c, r, ...)                                                                      \
    do {                                                                                            \
        tdesc *d_ = &sy.t[sy.n++];                                                                  \
        snprintf(d_->name, sizeof d_->name, __VA_ARGS__);                                           \
        d_->kind = kd;                                                                              \
        d_->type = tp;                                                                              \
        d_->cols = c;                                                                               \
        d_->rows = r;                                                                               \
    } while (0)
    ADD(K_EMBEDDING, t, p->dim, n_vocab, "token_embd.weight");
    ADD(K_NORM, LLC_F32, p->dim, 1, "output_norm.weight");
    if (!p->tied) ADD(K_MATRIX, t, p->dim, n_vocab, "output.weight");
    if (p->rope_factor > 0) ADD(K_ROPE, LLC_F32, head_dim / 2, 1, "rope_freqs.weight");
    for (int l = 0; l < p->n_layers; l++) {
        ADD(K_NORM, LLC_F32, p->dim, 1, "blk.%d.attn_norm.weight", l);
        ADD(K_MATRIX, t, p->dim, p->dim, "blk.%d.attn_q.weight", l);
        ADD(K_MATRIX, t, p->dim, kv_dim, "blk.%d.attn_k.weight", l);
        ADD(K_MATRIX, t, p->dim, kv_dim, "blk.%d.attn_v.weight", l);
        ADD(K_MATRIX, t, p->dim, p->dim, "blk.%d.attn_output.weight", l);
        ADD(K_NORM, LLC_F32, p->dim, 1, "blk.%d.ffn_norm.weight", l);
        ADD(K_MATRIX, t, p->dim, p->ffn_dim, "blk.%d.ffn_gate.weight", l);
        ADD(K_MATRIX, t, p->dim, p->ffn_dim, "blk.%d.ffn_up.weight", l);
        ADD(K_MATRIX, t, p->ffn_dim, p->dim, "blk.%d.ffn_down.weight", l);
    }
#undef ADD
    gguf_write_str(w, "general.architecture", "llama");
    gguf_write_str(w, "general.name", p->title);
    gguf_write_u32(w, "general.file_type", (uint32_t)file_type_of(t));
    gguf_write_u32(w, "general.quantization_version", 2);
    gguf_write_u32(w, "llama.block_count", (uint32_t)p->n_layers);
    gguf_write_u32(w, "llama.context_length", (uint32_t)p->n_ctx);
    gguf_write_u32(w, "llama.embedding_length", (uint32_t)p->dim);
    gguf_write_u32(w, "llama.feed_forward_length", (uint32_t)p->ffn_dim);
    gguf_write_u32(w, "llama.attention.head_count", (uint32_t)p->n_heads);
    gguf_write_u32(w, "llama.attention.head_count_kv", (uint32_t)p->n_kv_heads);
    gguf_write_f32(w, "llama.rope.freq_base", p->rope_theta);
    gguf_write_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_write_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);
    gguf_write_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
    llc_tokenizer_write_gguf(tok, w);
    for (int i = 0; i < sy.n; i++) {
        int64_t ne[2] = {sy.t[i].cols, sy.t[i].rows};
        gguf_writer_add_tensor(w, sy.t[i].name, sy.t[i].type, sy.t[i].rows == 1 ? 1 : 2, ne, NULL,
                               llc_row_size(sy.t[i].type, sy.t[i].cols) * (uint64_t)sy.t[i].rows);
    }
    double t0 = cli_now_ms();
    bool ok = gguf_writer_save(w, out, fill, &sy, &err);
    llamac_tokenizer_free(tok);
    gguf_writer_free(w);
    free(sy.t);
    if (!ok) return cli_error("%s", err.message);
    fprintf(stderr, "llamac: wrote %s (%s, %s, %d tensors) in %.1f s\n", out, p->title, type_name, sy.n, (cli_now_ms() - t0) / 1000.0);
    return 0;
}
