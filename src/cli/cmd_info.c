/* llamac info: what a model is and what it takes to run it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac info MODEL [--ctx N] [--tokenizer FILE] [--tensors]\n"
    "  hyperparameters, weight types and the memory needed at a context of N tokens (default 4096)\n"
    "  --tensors   list every weight matrix with its type and size\n";

int cmd_info(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL;
    int n_ctx = 0;
    bool tensors = false;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {&model_path, &tok_path, NULL, &n_ctx};
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
    if (n_ctx == 0) n_ctx = in.n_ctx_train < 4096 ? in.n_ctx_train : 4096;
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    printf("model:          %s (%s)\n", in.name, in.format);
    printf("parameters:     %.2f M in %.2f MiB, weights mostly %s\n", (double)in.n_params / 1e6, (double)in.weight_bytes / 1048576.0,
           in.weight_type);
    /* The mix of matrix types, e.g. "q4_0 x 112, q6_k x 1" (norms are always f32). */
    const char *types[16];
    int counts[16] = {0}, n_types = 0;
    llamac_tensor_info ti;
    for (int i = 0; llamac_model_tensor(m, i, &ti); i++) {
        if (ti.tied) continue;
        int k = 0;
        while (k < n_types && strcmp(types[k], ti.type)) k++;
        if (k == n_types && n_types < 16) types[n_types++] = ti.type;
        if (k < n_types) counts[k]++;
    }
    printf("matrix types:  ");
    for (int k = 0; k < n_types; k++) printf(" %s x %d%s", types[k], counts[k], k + 1 < n_types ? "," : "\n");
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
    uint64_t kv = llamac_model_kv_bytes(m, n_ctx);
    printf("memory at ctx %d: weights %.1f MiB (mapped) + KV cache %.1f MiB = %.1f MiB\n", n_ctx, (double)in.weight_bytes / 1048576.0,
           (double)kv / 1048576.0, (double)(in.weight_bytes + kv) / 1048576.0);
    if (tensors) {
        for (int i = 0; llamac_model_tensor(m, i, &ti); i++)
            printf("  %-24s %-5s [%6lld x %6lld] %10.2f MiB%s\n", ti.name, ti.type, (long long)ti.cols, (long long)ti.rows,
                   (double)ti.bytes / 1048576.0, ti.tied ? " (tied to token_embd)" : "");
    }
    llamac_model_free(m);
    return 0;
}
