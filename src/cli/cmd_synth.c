/*
 * llamac synth: random weights with the exact shapes of a real model, for tests and benchmarks where
 * the real weights cannot be had. The Llama 3 vocabulary is copied from a tokenizer.json, so the
 * model tokenizes and runs like the real thing. The same weights can be written as a GGUF (loadable by
 * llama.cpp too), a Hugging Face folder or a Meta original folder.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/outfile.h"
#include "cli/cli.h"
#include "model/model_writer.h"
#include "model/tensors.h"
#include "kernels/types.h"
#include "model/quant_mix.h"

typedef struct preset {
    const char *name, *title;
    int n_layers, dim, n_heads, n_kv_heads, ffn_dim, n_ctx;
    bool tied;
    float rope_theta, rope_factor; /* llama3 rope scaling factor; 0: none */
    bool llama2;                   /* Llama 2 vocabulary (SentencePiece) instead of Llama 3's */
} preset;

/* Shapes from the published configs; "-instruct" differs from its base only in the chat template the
 * vocabulary carries, which matters to chat. */
static const preset presets[] = {
    {"tiny", "synthetic tiny Llama 3", 2, 128, 4, 2, 320, 131072, true, 500000.0f, 32.0f, false},
    {"tiny-llama2", "synthetic tiny Llama 2", 2, 128, 4, 4, 352, 4096, false, 10000.0f, 0.0f, true},
    /* every row length a multiple of 256, so the k-quants (q4_k, q6_k, q4_k_m) apply without fallbacks */
    {"tiny-256", "synthetic tiny Llama 3 (256-multiple rows)", 2, 256, 4, 2, 768, 131072, true, 500000.0f, 32.0f, false},
    {"llama-3.2-1b", "synthetic Llama-3.2-1B", 16, 2048, 32, 8, 8192, 131072, true, 500000.0f, 32.0f, false},
    {"llama-3.2-1b-instruct", "synthetic Llama-3.2-1B-Instruct", 16, 2048, 32, 8, 8192, 131072, true, 500000.0f, 32.0f, false},
    {"llama-3.2-3b", "synthetic Llama-3.2-3B", 28, 3072, 24, 8, 8192, 131072, true, 500000.0f, 32.0f, false},
    {"llama-3.2-3b-instruct", "synthetic Llama-3.2-3B-Instruct", 28, 3072, 24, 8, 8192, 131072, true, 500000.0f, 32.0f, false},
    {"llama-3.1-8b", "synthetic Llama-3.1-8B", 32, 4096, 32, 8, 14336, 131072, false, 500000.0f, 8.0f, false},
    {"llama-2-7b", "synthetic Llama-2-7B", 32, 4096, 32, 32, 11008, 4096, false, 10000.0f, 0.0f, true},
};

static const char usage_text[] =
    "usage: llamac synth --preset NAME -o OUT [--format gguf|hf|meta] [--type TYPE] [--seed S] [--vocab FILE] [--layers N]\n"
    "  presets: tiny, tiny-llama2, tiny-256, llama-3.2-1b(-instruct), llama-3.2-3b(-instruct), llama-3.1-8b, llama-2-7b\n"
    "  -o OUT     the GGUF file (gguf) or the folder (hf, meta) to write\n"
    "  --type     f32 (default), f16, bf16, q8_0, q4_0, q4_k, q6_k, or a llama.cpp mix q4_k_m, q4_k_s (as `llamac quantize`)\n"
    "  --layers   the preset's shapes with N layers\n"
    "  --format   gguf (default); hf: config.json + model.safetensors + tokenizer.json; meta: params.json +\n"
    "             consolidated.00.pth + tokenizer.model. The same seed gives the same weights in every format.\n"
    "  --vocab    tokenizer to copy (default under $LLAMAC_SHARED or ../shared: Llama 3 models/llama3-tokenizer/tokenizer.json,\n"
    "             Llama 2 models/llama2-tokenizer/tokenizer.model)\n";

/* What fills each tensor. */
typedef enum { K_MATRIX, K_EMBEDDING, K_NORM, K_ROPE } tensor_kind;

typedef struct synth {
    const llc_model_src *src;
    tensor_kind *kinds;
    uint64_t seed;
} synth;

static uint64_t mix(uint64_t z) {
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
    uint64_t state = mix(sy->seed ^ mix((uint64_t)index + 1));
    for (int64_t r = 0; r < d->rows; r++) {
        for (int64_t c = 0; c < d->cols; c++) {
            state = mix(state);
            float u = (float)((double)(state >> 11) / 9007199254740992.0) * 2.0f - 1.0f; /* [-1, 1) */
            row[c] = kind == K_NORM ? 1.0f + scale * u : scale * u;
        }
        llc_type_get(d->type)->from_float(row, (char *)dst + (size_t)r * rb, d->cols);
    }
    free(row);
    return true;
}

int cmd_synth(int argc, char **argv) {
    const char *preset_name = NULL, *out = NULL, *type_name = "f32", *vocab = NULL, *format = "gguf", *v;
    uint64_t seed = 1;
    int n_layers = 0;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {NULL, NULL, NULL, NULL, NULL};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "--preset")) {
            if (!(preset_name = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "-o") || !strcmp(o, "--output")) {
            if (!(out = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--type")) {
            if (!(type_name = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--format")) {
            if (!(format = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--vocab")) {
            if (!(vocab = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--layers")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 1024, &n_layers)) return 2;
        } else if (!strcmp(o, "--seed") || !strcmp(o, "-s")) {
            if (!(v = cli_value(&a, o)) || !cli_u64(o, v, &seed)) return 2;
        } else {
            return cli_usage("synth: unknown option '%s'", o);
        }
    }
    if (!preset_name || !out) return cli_usage("synth: --preset NAME and -o OUT are required");
    const preset *pp = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, preset_name)) pp = &presets[i];
    if (!pp)
        return cli_usage("synth: unknown preset '%s' (tiny, tiny-llama2, tiny-256, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, llama-2-7b)",
                         preset_name);
    preset shape = *pp;
    if (n_layers > 0) shape.n_layers = n_layers;
    const preset *p = &shape;
    bool (*write)(const llc_model_src *, const char *, llamac_error *) = NULL;
    if (!strcmp(format, "gguf")) write = llc_write_gguf_model;
    else if (!strcmp(format, "hf")) write = llc_write_hf_folder;
    else if (!strcmp(format, "meta")) write = llc_write_meta_folder;
    else return cli_usage("synth: unknown --format '%s' (gguf, hf, meta)", format);
    llc_quant_mix mix;
    if (!llc_quant_mix_parse(type_name, &mix))
        return cli_usage("synth: unknown --type '%s' (%s)", type_name, llc_quant_mix_names());
    llamac_error err = {{0}};
    /* a GGUF file or a folder of files, each written as base/outfile.h says; checked before any work */
    if (write == llc_write_gguf_model ? !llc_outfile_check(out, &err) : !llc_outdir_prepare(out, false, &err))
        return cli_error("%s", err.message);
    char default_vocab[4096];
    if (!vocab) {
        const char *shared = getenv("LLAMAC_SHARED");
        snprintf(default_vocab, sizeof default_vocab, "%s/models/%s", shared ? shared : "../shared",
                 p->llama2 ? "llama2-tokenizer/tokenizer.model" : "llama3-tokenizer/tokenizer.json");
        vocab = default_vocab;
    }
    llamac_tokenizer *tok = llamac_tokenizer_load(vocab, &err);
    if (!tok) return cli_error("%s", err.message);

    int n_vocab = llamac_tokenizer_n_vocab(tok), head_dim = p->dim / p->n_heads;
    int cap = llc_tensor_refs_max(p->n_layers);
    llc_model_src src = {
        .name = p->title, .n_layers = p->n_layers, .dim = p->dim, .n_heads = p->n_heads, .n_kv_heads = p->n_kv_heads,
        .ffn_dim = p->ffn_dim, .n_vocab = n_vocab, .n_ctx_train = p->n_ctx, .rms_eps = 1e-5f, .rope_theta = p->rope_theta,
        .rope_factor = p->rope_factor, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
        .rope_original_ctx = 8192, .tied = p->tied, .instruct = strstr(p->name, "instruct") != NULL, .tok = tok, .tokenizer_file = vocab,
        .tensors = calloc((size_t)cap, sizeof(llc_src_tensor)), .fill = fill,
        .has_file_type = mix.file_type != LLC_FTYPE_NONE, .file_type = mix.file_type,
    };
    synth sy = {&src, calloc((size_t)cap, sizeof(tensor_kind)), seed};
    src.ctx = &sy;
    llc_tensor_ref *refs = malloc((size_t)cap * sizeof *refs);
    if (!src.tensors || !sy.kinds || !refs) {
        free(refs);
        free(src.tensors);
        free(sy.kinds);
        llamac_tokenizer_free(tok);
        return cli_error("out of memory");
    }
    /* the shapes, from the preset's sizes */
    const llc_hparams hp = {.n_layers = p->n_layers, .dim = p->dim, .n_heads = p->n_heads, .n_kv_heads = p->n_kv_heads,
                            .head_dim = head_dim, .ffn_dim = p->ffn_dim, .n_vocab = n_vocab, .rope_dim = head_dim};
    int n_refs = llc_tensor_refs(p->n_layers, p->tied, p->rope_factor > 0, refs);
    for (int i = 0; i < n_refs; i++) {
        const llc_tensor_desc *d = refs[i].d;
        llc_src_tensor *t = &src.tensors[src.n_tensors];
        llc_tensor_name(d, LLC_NAMES_GGUF, refs[i].layer, t->name, sizeof t->name);
        t->type = d->vector ? LLC_F32 : mix.base; /* matrices refined below */
        t->cols = llc_extent_of(&hp, d->cols);
        t->rows = llc_extent_of(&hp, d->rows);
        sy.kinds[src.n_tensors++] = d == llc_t_tok_embd ? K_EMBEDDING : d == llc_t_rope_freqs ? K_ROPE : d->vector ? K_NORM : K_MATRIX;
    }
    free(refs);
    const llc_mix_model mm = {p->n_layers, p->n_heads, p->n_kv_heads, p->tied};
    for (int i = 0; i < src.n_tensors; i++) {
        llc_src_tensor *d = &src.tensors[i];
        if (sy.kinds[i] != K_MATRIX && sy.kinds[i] != K_EMBEDDING) continue;
        d->type = llc_quant_tensor_type(&mix, d->name, d->cols, d->rows, &mm);
        if (!llc_type_get(d->type) || !llc_type_get(d->type)->from_float) {
            cli_error("synth: %s: llamac cannot write %s tensors (not supported by this build)", d->name, llc_type_name(d->type));
            llamac_tokenizer_free(tok);
            free(src.tensors);
            free(sy.kinds);
            return 1;
        }
    }
    double t0 = cli_now_ms();
    bool ok = write(&src, out, &err);
    llamac_tokenizer_free(tok);
    free(src.tensors);
    free(sy.kinds);
    if (!ok) return cli_error("%s", err.message);
    fprintf(stderr, "llamac: wrote %s (%s, %s) in %.1f s\n", out, p->title, type_name, (cli_now_ms() - t0) / 1000.0);
    return 0;
}
