/* llamac info: what a model is and what it takes to run it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

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
    const char *ft_name;
    int ft = llamac_model_file_type(m, &ft_name);
    if (ft >= 0) printf("file type:      %s (general.file_type %d)\n", ft_name ? ft_name : "unknown", ft);
    /* The mix of tensor types, the biggest share first, e.g. "q4_k  97 tensors  650.1 MiB  80.1%" */
    llamac_type_share x[64];
    int n_types = llamac_model_type_mix(m, x, 64);
    uint64_t total_bytes = 0, total_elements = 0;
    for (int k = 0; k < n_types; k++) {
        total_bytes += x[k].bytes;
        total_elements += x[k].n_elements;
    }
    printf("weight types:   %.2f bits per weight overall\n", total_elements ? 8.0 * (double)total_bytes / (double)total_elements : 0.0);
    for (int k = 0; k < n_types; k++)
        printf("  %-6s %5d tensor%s %10.2f MiB %6.1f%%  %5.2f bits per weight\n", x[k].type, x[k].n_tensors, x[k].n_tensors == 1 ? " " : "s",
               (double)x[k].bytes / 1048576.0, total_bytes ? 100.0 * (double)x[k].bytes / (double)total_bytes : 0.0,
               x[k].n_elements ? 8.0 * (double)x[k].bytes / (double)x[k].n_elements : 0.0);
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
