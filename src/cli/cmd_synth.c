/*
 * llamac synth: random weights with the exact shapes of a real model, for tests and benchmarks where
 * the real weights cannot be had. The Llama 3 vocabulary is copied from a tokenizer.json, so the
 * model tokenizes and runs like the real thing. The same weights can be written as a GGUF (loadable by
 * llama.cpp too), a Hugging Face folder or a Meta original folder. The shapes are named here; the
 * weights are written by llamac_model_synth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

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

/* Vocabularies the presets copy by default: Llama 3's tokenizer.json, Llama 2's tokenizer.model. */
#define LLAMA3_VOCAB 128256
#define LLAMA3_MERGES 280147
#define LLAMA2_VOCAB 32000

bool cli_synth_preset(const char *name, llamac_model_shape *out) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const preset *p = &presets[i];
        if (strcmp(p->name, name)) continue;
        *out = (llamac_model_shape){p->n_layers, p->dim, p->n_heads, p->n_kv_heads, p->ffn_dim, p->llama2 ? LLAMA2_VOCAB : LLAMA3_VOCAB,
                                    p->n_ctx, p->tied, p->rope_factor > 0, NULL, p->llama2 ? 0 : LLAMA3_MERGES};
        return true;
    }
    return false;
}

const char *cli_synth_preset_names(void) {
    return "tiny, tiny-llama2, tiny-256, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, llama-2-7b";
}

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
        return cli_usage("synth: unknown preset '%s' (%s)", preset_name, cli_synth_preset_names());
    preset shape = *pp;
    if (n_layers > 0) shape.n_layers = n_layers;
    const preset *p = &shape;
    if (strcmp(format, "gguf") && strcmp(format, "hf") && strcmp(format, "meta"))
        return cli_usage("synth: unknown --format '%s' (gguf, hf, meta)", format);
    if (!llamac_save_type_known(type_name))
        return cli_usage("synth: unknown --type '%s' (%s)", type_name, llamac_save_type_names());
    char default_vocab[4096];
    if (!vocab) {
        const char *shared = getenv("LLAMAC_SHARED");
        snprintf(default_vocab, sizeof default_vocab, "%s/models/%s", shared ? shared : "../shared",
                 p->llama2 ? "llama2-tokenizer/tokenizer.model" : "llama3-tokenizer/tokenizer.json");
        vocab = default_vocab;
    }
    const llamac_synth_params sp = {
        .name = p->title, .n_layers = p->n_layers, .dim = p->dim, .n_heads = p->n_heads, .n_kv_heads = p->n_kv_heads,
        .ffn_dim = p->ffn_dim, .n_ctx_train = p->n_ctx, .tied = p->tied, .rope_theta = p->rope_theta, .rope_factor = p->rope_factor,
        .instruct = strstr(p->name, "instruct") != NULL, .tokenizer_path = vocab, .type = type_name, .format = format, .seed = seed,
    };
    llamac_error err = {{0}};
    double t0 = cli_now_ms();
    if (!llamac_model_synth(out, &sp, &err)) return cli_error("%s", err.message);
    fprintf(stderr, "llamac: wrote %s (%s, %s) in %.1f s\n", out, p->title, type_name, (cli_now_ms() - t0) / 1000.0);
    return 0;
}
