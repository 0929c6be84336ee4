/*
 * llamac perplexity, with llama-perplexity's convention so the numbers compare: the text is tokenized
 * once with BOS and cut into consecutive windows of n_ctx tokens (a partial last window is dropped);
 * each window starts from a fresh cache with its first token replaced by BOS, and only the second
 * half of each window is scored, so every scored token has at least n_ctx/2 tokens of context.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac perplexity -m MODEL -f TEXT_FILE [--ctx N] [--kv-type T] [--tokenizer FILE] [--threads N] [--json]\n"
    "  --ctx N     window size in tokens (default 512; at most the model's context)\n"
    "  --kv-type T element type of the KV cache: f32 (default), f16, bf16, q8_0\n"
    "  --json      end with one JSON line: {\"ppl\", \"chunks\", \"ctx\", \"tokens\", \"scored\"}\n";

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *file = NULL, *v;
    int n_ctx = 512, n_threads = 0;
    bool json = false;
    cli_args a = {argc, 1, argv, false};
    llamac_kv_type kv_type = LLAMAC_KV_F32;
    const cli_common common = {&model_path, &tok_path, &n_threads, NULL, &kv_type};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "-f") || !strcmp(o, "--file")) {
            if (!(file = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "-c") || !strcmp(o, "--ctx")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 4, 1 << 20, &n_ctx)) return 2;
        } else if (!strcmp(o, "--json")) {
            json = true;
        } else {
            return cli_usage("perplexity: unknown option '%s'", o);
        }
    }
    if (!model_path || !file) return cli_usage("perplexity: -m MODEL and -f TEXT_FILE are required");
    size_t len;
    char *text = cli_read_text(file, &len);
    if (!text) return 1;
    int rc = 1;
    int32_t *ids = NULL;
    float *logits = NULL;
    llamac_session *s = NULL;
    llamac_model *m = cli_load_model(model_path, tok_path);
    if (!m) goto done;
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    /* Longer windows than the model was trained on measure nothing it can do, at a cost that grows
     * with the square of the window. */
    if (n_ctx > info.n_ctx_train) {
        cli_error("a window of --ctx %d tokens is longer than the model's context (%d)", n_ctx, info.n_ctx_train);
        goto done;
    }
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    int n = cli_tokenize(tok, text, len, true, false, &ids);
    if (n < 0) goto done;
    int n_chunks = n / n_ctx;
    if (n_chunks == 0) {
        cli_error("%s has %d tokens, fewer than one window of --ctx %d", file, n, n_ctx);
        goto done;
    }
    llamac_error err = {{0}};
    llamac_session_params sp = {.n_ctx = n_ctx, .n_threads = n_threads, .kv_type = kv_type};
    if (!(s = llamac_session_create(m, &sp, &err))) {
        cli_error("%s", err.message);
        goto done;
    }
    int32_t bos = llamac_tokenizer_bos(tok);
    int first = n_ctx / 2;
    /* Only the scored half needs its logits, a piece at a time: the buffer stays PIECE rows of n_vocab
     * whatever the window (a whole window of 8192 would need 4 GiB with Llama 3's vocabulary). */
    enum { PIECE = 128 };
    int rows = n_ctx - 1 - first < PIECE ? n_ctx - 1 - first : PIECE; /* the last position predicts nothing */
    logits = malloc((size_t)rows * (size_t)info.n_vocab * sizeof *logits);
    if (!logits) {
        cli_error("out of memory for %d x %d logits", rows, info.n_vocab);
        goto done;
    }
    double nll = 0;
    long scored = 0;
    double t0 = cli_now_ms();
    for (int c = 0; c < n_chunks; c++) {
        int32_t *w = ids + (size_t)c * n_ctx;
        int32_t saved = w[0];
        if (bos >= 0) w[0] = bos;
        llamac_session_truncate(s, 0);
        bool ok = llamac_session_eval(s, w, first, &err) != NULL;
        w[0] = saved;
        for (int j0 = first; ok && j0 < n_ctx - 1; j0 += rows) {
            int k = n_ctx - 1 - j0 < rows ? n_ctx - 1 - j0 : rows;
            if (!(ok = llamac_session_eval_all(s, w + j0, k, logits, &err) == 0)) break;
            for (int j = j0; j < j0 + k; j++) {
                const float *l = logits + (size_t)(j - j0) * info.n_vocab;
                float max = l[0];
                for (int i = 1; i < info.n_vocab; i++) max = l[i] > max ? l[i] : max;
                double sum = 0;
                for (int i = 0; i < info.n_vocab; i++) sum += exp((double)l[i] - max);
                nll += -((double)l[w[j + 1]] - max - log(sum));
                scored++;
            }
        }
        if (!ok) {
            cli_error("%s", err.message);
            goto done;
        }
        printf("[%d]%.4f%s", c + 1, exp(nll / (double)scored), c + 1 < n_chunks ? "," : "\n");
        fflush(stdout);
    }
    double ppl = exp(nll / (double)scored);
    fprintf(stderr, "llamac: %d chunks of %d tokens, %ld predictions scored, %.1f s\n", n_chunks, n_ctx, scored,
            (cli_now_ms() - t0) / 1000.0);
    if (json)
        printf("{\"ppl\": %.6f, \"chunks\": %d, \"ctx\": %d, \"tokens\": %d, \"scored\": %ld}\n", ppl, n_chunks, n_ctx, n, scored);
    else
        printf("Final estimate: PPL = %.4f\n", ppl);
    rc = 0;
done:
    free(logits);
    free(ids);
    free(text);
    llamac_session_free(s);
    llamac_model_free(m);
    return rc;
}
