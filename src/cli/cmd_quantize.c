/*
 * llamac quantize: any model llamac loads, written as a GGUF of one type or one of llama.cpp's k-quant
 * mixes, like llama-quantize: llamac_model_save with a type. Also the writing half of `convert`
 * (cli_write_gguf); this file only parses, reports progress and prints the summary.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/outfile.h"
#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac quantize IN OUT.gguf TYPE [--threads N] [--tokenizer FILE]\n"
    "  IN: a GGUF (any type llamac reads), a llama2.c .bin, a Hugging Face folder or a Meta original folder\n"
    "  TYPE (any case, Q4_K_M as llama-quantize spells it, or q4_k_m):\n"
    "    f32, f16, bf16, q8_0, q4_0, q4_k, q6_k   every matrix in that type\n"
    "    q4_k_m   llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the output (token_embd when tied) and for\n"
    "             attn_v and ffn_down in the first and last eighth of the layers and every third between\n"
    "    q4_k_s   llama.cpp's Q4_K_S mix: Q4_K, Q6_K output, attn_v of layers 0-3 and ffn_down of the first\n"
    "             eighth in Q6_K (llama.cpp: Q5_K, which llamac does not have)\n"
    "  Rows whose length the type's block does not divide fall back: q4_k -> q4_0, q6_k -> q8_0, and rows\n"
    "  that are not a multiple of 32 to f16. Norms stay f32. A tensor already of its type is copied as is.\n"
    "  -t, --threads N   threads quantizing rows (default: all cores)\n";

/* The progress bar and the tally of the types written, from llamac_model_save's callback. */
typedef struct progress {
    const char *what;
    double t0;
    int n;                      /* types seen */
    const char *types[64];
    int counts[64];
    uint64_t bytes[64];
} progress;

static bool on_tensor(void *user, const llamac_tensor_info *t, uint64_t done, uint64_t total) {
    progress *p = user;
    int k = 0;
    while (k < p->n && strcmp(p->types[k], t->type) != 0) k++;
    if (k == p->n && p->n < 64) p->types[p->n++] = t->type;
    if (k < p->n) {
        p->counts[k]++;
        p->bytes[k] += t->bytes;
    }
    cli_progress(p->what, done, total, p->t0);
    return true;
}

/* "q4_k: 97 tensors, q6_k: 17, f32: 33", the biggest share of bytes first. */
static void print_type_counts(const progress *p) {
    int order[64];
    for (int k = 0; k < p->n; k++) order[k] = k;
    for (int a = 0; a < p->n; a++)
        for (int b = a + 1; b < p->n; b++)
            if (p->bytes[order[b]] > p->bytes[order[a]]) {
                int t = order[a];
                order[a] = order[b];
                order[b] = t;
            }
    fprintf(stderr, "llamac: tensor types: ");
    for (int j = 0; j < p->n; j++) {
        int k = order[j];
        fprintf(stderr, "%s: %d%s%s", p->types[k], p->counts[k], j == 0 ? " tensors" : "", j + 1 < p->n ? ", " : "\n");
    }
}

int cli_write_gguf(const char *in, const char *out, const char *tok_path, const char *type, int n_threads, const char *verb) {
    llamac_error err = {{0}};
    /* before the load and the minutes of quantizing that writing may take */
    if (!llc_outfile_check(out, &err)) return cli_error("%s", err.message);
    double t0 = cli_now_ms();
    llamac_model *m = cli_load_model(in, tok_path);
    if (!m) return 1;
    llamac_model_info in_info;
    llamac_model_get_info(m, &in_info);
    progress p = {.what = verb, .t0 = t0};
    llamac_save_params sp = {.type = type, .n_threads = n_threads, .progress = on_tensor, .user = &p};
    llamac_save_stats st;
    bool ok = llamac_model_save(m, out, &sp, &st, &err);
    if (ok) {
        char type_lc[32] = "";
        for (size_t i = 0; type && type[i] && i + 1 < sizeof type_lc; i++) type_lc[i] = (char)tolower((unsigned char)type[i]);
        struct stat fst;
        double secs = (cli_now_ms() - t0) / 1000.0;
        fprintf(stderr, "llamac: wrote %s%s%s%s%s in %.2f s (%d thread%s)\n", out, type ? " as " : "", type_lc,
                st.file_type ? ", " : "", st.file_type ? st.file_type : "", secs, st.n_threads, st.n_threads == 1 ? "" : "s");
        fprintf(stderr, "llamac: size: %.2f MiB of %s weights (%.2f bits per weight) -> %.2f MiB (%.2f bits per weight), file %.2f MiB\n",
                (double)in_info.weight_bytes / 1048576.0, in_info.weight_type,
                in_info.n_params ? 8.0 * (double)in_info.weight_bytes / (double)in_info.n_params : 0.0, (double)st.bytes / 1048576.0,
                st.n_elements ? 8.0 * (double)st.bytes / (double)st.n_elements : 0.0,
                stat(out, &fst) == 0 ? (double)fst.st_size / 1048576.0 : 0.0);
        print_type_counts(&p);
    }
    llamac_model_free(m);
    return ok ? 0 : cli_error("%s", err.message);
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL}, *tok_path = NULL;
    int n_pos = 0, n_threads = 0;
    cli_args a = {argc, 1, argv, false};
    const cli_common common = {NULL, &tok_path, &n_threads, NULL, NULL};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (o[0] == '-' && o[1]) return cli_usage("quantize: unknown option '%s'", o);
        if (n_pos == 3) return cli_usage("quantize: IN OUT.gguf TYPE, nothing more");
        pos[n_pos++] = o;
    }
    if (n_pos < 3) return cli_usage("quantize: IN, OUT.gguf and TYPE are required (llamac quantize --help)");
    if (!llamac_save_type_known(pos[2]))
        return cli_usage("quantize: unknown type '%s' (%s)", pos[2], llamac_save_type_names());
    return cli_write_gguf(pos[0], pos[1], tok_path, pos[2], n_threads, "quantizing");
}
