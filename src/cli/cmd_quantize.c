/*
 * llamac quantize: any model llamac loads, written as a GGUF of one type or one of llama.cpp's k-quant
 * mixes (model/quant_mix.h), like llama-quantize. Also the writing half of `convert`
 * (cli_write_gguf).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/outfile.h"
#include "base/threadpool.h"
#include "cli/cli.h"
#include "kernels/types.h"
#include "model/model_export.h"
#include "model/quant_mix.h"

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

/* Reports progress on stderr while the writer pulls tensors. */
typedef struct progress {
    bool (*fill)(void *, int, void *, uint64_t, llamac_error *);
    void *ctx;
    const char *what;
    uint64_t done, total;
    double t0;
} progress;

static bool fill_with_progress(void *ctx, int i, void *dst, uint64_t nbytes, llamac_error *err) {
    progress *p = ctx;
    if (!p->fill(p->ctx, i, dst, nbytes, err)) return false;
    p->done += nbytes;
    cli_progress(p->what, p->done, p->total, p->t0);
    return true;
}

/* "q4_k: 97 tensors, q6_k: 17, f32: 33", the biggest share of bytes first. */
static void print_type_counts(const llc_model_src *src) {
    uint32_t types[LLC_TYPE_COUNT];
    int counts[LLC_TYPE_COUNT] = {0}, n = 0;
    uint64_t bytes[LLC_TYPE_COUNT] = {0};
    for (int i = 0; i < src->n_tensors; i++) {
        const llc_src_tensor *t = &src->tensors[i];
        int k = 0;
        while (k < n && types[k] != t->type) k++;
        if (k == n) types[n++] = t->type;
        counts[k]++;
        bytes[k] += llc_row_size(t->type, t->cols) * (uint64_t)t->rows;
    }
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++)
            if (bytes[b] > bytes[a]) {
                uint32_t tt = types[a];
                types[a] = types[b];
                types[b] = tt;
                int tc = counts[a];
                counts[a] = counts[b];
                counts[b] = tc;
                uint64_t tb = bytes[a];
                bytes[a] = bytes[b];
                bytes[b] = tb;
            }
    fprintf(stderr, "llamac: tensor types: ");
    for (int k = 0; k < n; k++)
        fprintf(stderr, "%s: %d%s%s", llc_type_name(types[k]), counts[k], k == 0 ? " tensors" : "", k + 1 < n ? ", " : "\n");
}

int cli_write_gguf(const char *in, const char *out, const char *tok_path, const llc_quant_mix *mix, int n_threads,
                   const char *verb) {
    llamac_error err = {{0}};
    /* before the load and the minutes of quantizing that writing may take */
    if (!llc_outfile_check(out, &err)) return cli_error("%s", err.message);
    double t0 = cli_now_ms();
    llamac_model *m = cli_load_model(in, tok_path);
    if (!m) return 1;
    llamac_model_info in_info;
    llamac_model_get_info(m, &in_info);
    if (n_threads <= 0) n_threads = llc_n_cores();
    llc_pool *pool = n_threads > 1 ? llc_pool_create(n_threads) : NULL;
    n_threads = pool ? llc_pool_size(pool) : 1;
    llc_model_src src;
    if (!llc_model_export(m, mix, pool, &src, &err)) {
        llc_pool_free(pool);
        llamac_model_free(m);
        return cli_error("%s: %s", in, err.message);
    }
    progress p = {src.fill, src.ctx, verb, 0, 0, t0};
    uint64_t n_elements = 0;
    for (int i = 0; i < src.n_tensors; i++) {
        p.total += llc_row_size(src.tensors[i].type, src.tensors[i].cols) * (uint64_t)src.tensors[i].rows;
        n_elements += (uint64_t)src.tensors[i].cols * (uint64_t)src.tensors[i].rows;
    }
    src.fill = fill_with_progress;
    src.ctx = &p;
    /* written beside the output and renamed when complete (base/outfile.h), so the output may replace
     * the (mapped) input */
    bool ok = llc_write_gguf_model(&src, out, &err);
    src.fill = p.fill;
    src.ctx = p.ctx;
    if (ok) {
        struct stat st;
        double secs = (cli_now_ms() - t0) / 1000.0;
        const char *ft = mix && mix->file_type != LLC_FTYPE_NONE ? llc_file_type_name(mix->file_type) : NULL;
        fprintf(stderr, "llamac: wrote %s%s%s%s%s in %.2f s (%d thread%s)\n", out, mix ? " as " : "", mix ? mix->name : "",
                ft ? ", " : "", ft ? ft : "", secs, n_threads, n_threads == 1 ? "" : "s");
        fprintf(stderr, "llamac: size: %.2f MiB of %s weights (%.2f bits per weight) -> %.2f MiB (%.2f bits per weight), file %.2f MiB\n",
                (double)in_info.weight_bytes / 1048576.0, in_info.weight_type,
                in_info.n_params ? 8.0 * (double)in_info.weight_bytes / (double)in_info.n_params : 0.0, (double)p.total / 1048576.0,
                n_elements ? 8.0 * (double)p.total / (double)n_elements : 0.0,
                stat(out, &st) == 0 ? (double)st.st_size / 1048576.0 : 0.0);
        print_type_counts(&src);
    }
    llc_model_export_free(&src);
    llc_pool_free(pool);
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
    llc_quant_mix mix;
    if (!llc_quant_mix_parse(pos[2], &mix))
        return cli_usage("quantize: unknown type '%s' (%s)", pos[2], llc_quant_mix_names());
    return cli_write_gguf(pos[0], pos[1], tok_path, &mix, n_threads, "quantizing");
}
