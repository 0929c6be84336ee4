/* llamac info: what a model is and what it takes to run it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kernels/types.h"
#include "model/model.h"
#include "model/quant_mix.h"

/* The tensors by type: count, bytes, elements. */
typedef struct type_mix {
    int n;
    const char *name[LLC_TYPE_COUNT + 1];
    int count[LLC_TYPE_COUNT + 1];
    uint64_t bytes[LLC_TYPE_COUNT + 1], elements[LLC_TYPE_COUNT + 1];
} type_mix;

static void mix_add(type_mix *x, const char *type, uint64_t bytes, uint64_t elements) {
    int k = 0;
    while (k < x->n && strcmp(x->name[k], type)) k++;
    if (k == x->n) {
        if (x->n == LLC_TYPE_COUNT + 1) return;
        x->name[x->n++] = type;
    }
    x->count[k]++;
    x->bytes[k] += bytes;
    x->elements[k] += elements;
}

/* What the file holds: a GGUF's own tensor list; for other formats the matrices as loaded plus the
 * norms (and rope_freqs), which llamac keeps in f32. */
static void model_mix(const llamac_model *m, type_mix *x) {
    memset(x, 0, sizeof *x);
    if (m->gguf) {
        for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
            const llc_gguf_tensor *t = &m->gguf->tensors[i];
            uint64_t n = 1;
            for (int d = 0; d < 4; d++) n *= (uint64_t)t->ne[d];
            mix_add(x, llc_type_name(t->type), t->nbytes, n);
        }
        return;
    }
    llamac_tensor_info ti;
    for (int i = 0; llamac_model_tensor(m, i, &ti); i++)
        if (!ti.tied) mix_add(x, ti.type, ti.bytes, (uint64_t)ti.cols * (uint64_t)ti.rows);
    const llc_hparams *hp = &m->hp;
    for (int i = 0; i < 1 + 2 * hp->n_layers; i++) mix_add(x, "f32", 4ull * (uint64_t)hp->dim, (uint64_t)hp->dim);
    if (m->rope_freqs) mix_add(x, "f32", 4ull * (uint64_t)(hp->rope_dim / 2), (uint64_t)(hp->rope_dim / 2));
}

static const char usage_text[] =
    "usage: llamac info MODEL [--ctx N] [--kv-type T] [--tokenizer FILE] [--tensors]\n"
    "  hyperparameters, weight types and the memory needed at a context of N tokens (default 4096)\n"
    "  --kv-type T the KV cache's element type for that memory: f32 (default), f16, bf16, q8_0\n"
    "  --tensors   list every weight matrix with its type and size\n";

int cmd_info(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL;
    int n_ctx = 0;
    bool tensors = false;
    cli_args a = {argc, 1, argv, false};
    llamac_kv_type kv_type = LLAMAC_KV_F32;
    const cli_common common = {&model_path, &tok_path, NULL, &n_ctx, &kv_type};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "--tensors")) {
            tensors = true;
        } else if (o[0] == '-' && o[1]) {
            return cli_usage("info: unknown option '%s'", o);
        } else if (!model_path) {
            model_path = o;
        } else {
            return cli_usage("info: one model at a time");
        }
    }
    if (!model_path) return cli_usage("info: a model file is required");
    llamac_model *m = cli_load_model(model_path, tok_path);
    if (!m) return 1;
    llamac_model_info in;
    llamac_model_get_info(m, &in);
    if (n_ctx == 0) n_ctx = cli_default_ctx(m);
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    printf("model:          %s (%s)\n", in.name, in.format);
    printf("parameters:     %.2f M in %.2f MiB, weights mostly %s\n", (double)in.n_params / 1e6, (double)in.weight_bytes / 1048576.0,
           in.weight_type);
    /* llama.cpp's file type, when the file names one */
    uint32_t ft;
    llamac_error ft_err = {{0}};
    if (m->gguf && llc_gguf_get_u32(m->gguf, "general.file_type", &ft, &ft_err)) {
        const char *ft_name = llc_file_type_name(ft);
        printf("file type:      %s (general.file_type %u)\n", ft_name ? ft_name : "unknown", ft);
    }
    /* The mix of tensor types, the biggest share first, e.g. "q4_k  97 tensors  650.1 MiB  80.1%" */
    type_mix x;
    model_mix(m, &x);
    uint64_t total_bytes = 0, total_elements = 0;
    for (int k = 0; k < x.n; k++) {
        total_bytes += x.bytes[k];
        total_elements += x.elements[k];
    }
    printf("weight types:   %.2f bits per weight overall\n", total_elements ? 8.0 * (double)total_bytes / (double)total_elements : 0.0);
    bool shown[LLC_TYPE_COUNT + 1] = {false};
    for (int r = 0; r < x.n; r++) {
        int k = -1;
        for (int j = 0; j < x.n; j++)
            if (!shown[j] && (k < 0 || x.bytes[j] > x.bytes[k])) k = j;
        shown[k] = true;
        printf("  %-6s %5d tensor%s %10.2f MiB %6.1f%%  %5.2f bits per weight\n", x.name[k], x.count[k], x.count[k] == 1 ? " " : "s",
               (double)x.bytes[k] / 1048576.0, total_bytes ? 100.0 * (double)x.bytes[k] / (double)total_bytes : 0.0,
               x.elements[k] ? 8.0 * (double)x.bytes[k] / (double)x.elements[k] : 0.0);
    }
    printf("layers:         %d\n", in.n_layers);
    printf("embedding:      %d\n", in.dim);
    printf("heads:          %d query, %d key/value (head size %d)\n", in.n_heads, in.n_kv_heads, in.head_dim);
    printf("feed-forward:   %d\n", in.ffn_dim);
    printf("vocabulary:     %d (tokenizer: %d tokens, BOS %d, EOS %d)\n", in.n_vocab, llamac_tokenizer_n_vocab(tok),
           llamac_tokenizer_bos(tok), llamac_tokenizer_eos(tok));
    printf("context:        %d trained\n", in.n_ctx_train);
    printf("rope:           base %g, %d dims rotated%s\n", in.rope_theta, in.rope_dim, in.has_rope_freqs ? ", scaled (rope_freqs)" : "");
    printf("rms norm eps:   %g\n", in.rms_eps);
    printf("output:         %s\n", in.tied_output ? "tied to the token embedding" : "separate matrix");
    printf("kernels:        %s\n", llamac_isa());
    printf("KV per token:  ");
    for (int t = LLAMAC_KV_F32; t <= LLAMAC_KV_Q8_0; t++) {
        uint64_t b = llamac_model_kv_bytes(m, 1, (llamac_kv_type)t);
        if (b) printf(" %s %.2f KiB", llamac_kv_type_name((llamac_kv_type)t), (double)b / 1024.0);
        else printf(" %s n/a", llamac_kv_type_name((llamac_kv_type)t));
    }
    printf("\n");
    uint64_t kv = llamac_model_kv_bytes(m, n_ctx, kv_type);
    if (kv == 0) {
        llamac_model_free(m);
        return cli_error("a KV cache of type %s needs rows (n_kv_heads x head_dim = %d) that are a multiple of 32",
                         llamac_kv_type_name(kv_type), in.n_kv_heads * in.head_dim);
    }
    printf("memory at ctx %d: weights %.1f MiB (mapped) + KV cache %.1f MiB (%s) = %.1f MiB\n", n_ctx,
           (double)in.weight_bytes / 1048576.0, (double)kv / 1048576.0, llamac_kv_type_name(kv_type),
           (double)(in.weight_bytes + kv) / 1048576.0);
    if (tensors) {
        llamac_tensor_info ti;
        for (int i = 0; llamac_model_tensor(m, i, &ti); i++)
            printf("  %-24s %-5s [%6lld x %6lld] %10.2f MiB%s\n", ti.name, ti.type, (long long)ti.cols, (long long)ti.rows,
                   (double)ti.bytes / 1048576.0, ti.tied ? " (tied to token_embd)" : "");
    }
    llamac_model_free(m);
    return 0;
}
