/* llamac logits: the last position's logits after a prompt, as JSON, for comparison with other
 * implementations. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage_text[] =
    "usage: llamac logits -m MODEL (-p PROMPT | --ids I,J,K) [--top K] [--no-bos] [--ctx N] [--kv-type T] [--tokenizer FILE] [--threads N]\n"
    "  prints {\"prompt_ids\": [...], \"logits\": [...]} — all n_vocab logits of the last position,\n"
    "  or with --top K the K largest as [id, logit] pairs\n"
    "  -c, --ctx N   the most tokens accepted (default: the model's context, at most 4096; at most the model's)\n";

static int parse_ids(const char *s, int32_t **out) {
    int n = 0, cap = 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return -1;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *q = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!q) {
                free(ids);
                return -1;
            }
            ids = q;
        }
        ids[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    *out = ids;
    return n;
}

static const float *sort_logits;
static int by_logit_desc(const void *a, const void *b) {
    float x = sort_logits[*(const int *)a], y = sort_logits[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *ids_arg = NULL, *v;
    int top = 0, n_threads = 0, n_ctx = 0;
    bool bos = true;
    cli_args a = {argc, 1, argv, false};
    llamac_kv_type kv_type = LLAMAC_KV_F32;
    const cli_common common = {&model_path, &tok_path, &n_threads, &n_ctx, &kv_type};
    for (; a.i < argc; a.i++) {
        const char *o = argv[a.i];
        CLI_COMMON_OPTIONS(a, common, usage_text)
        if (!strcmp(o, "-p") || !strcmp(o, "--prompt")) {
            if (!(prompt = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--ids")) {
            if (!(ids_arg = cli_value(&a, o))) return 2;
        } else if (!strcmp(o, "--top")) {
            if (!(v = cli_value(&a, o)) || !cli_int(o, v, 1, 1 << 24, &top)) return 2;
        } else if (!strcmp(o, "--no-bos")) {
            bos = false;
        } else {
            return cli_usage("logits: unknown option '%s'", o);
        }
    }
    if (!model_path) return cli_usage("logits: -m MODEL is required");
    if (!prompt == !ids_arg) return cli_usage("logits: give -p PROMPT or --ids I,J,K");
    int32_t *ids = NULL;
    int n = 0, rc = 1;
    llamac_session *s = NULL;
    if (ids_arg && (n = parse_ids(ids_arg, &ids)) <= 0) return cli_usage("logits: --ids expects comma-separated token ids");
    llamac_model *m = cli_load_model(model_path, tok_path);
    if (!m) goto done;
    if (prompt && (n = cli_tokenize(llamac_model_tokenizer(m), prompt, strlen(prompt), bos, false, &ids)) < 0) goto done;
    if (n == 0) {
        cli_error("the prompt is empty");
        goto done;
    }
    llamac_model_info info;
    llamac_model_get_info(m, &info);
    /* As generate refuses a prompt that does not fit its context, before any work: the session is
     * made exactly as long as the ids, so without this --ids could ask for any length. */
    if (n_ctx > info.n_ctx_train) {
        cli_error("--ctx %d is longer than the model's context (%d)", n_ctx, info.n_ctx_train);
        goto done;
    }
    int ctx = n_ctx ? n_ctx : cli_default_ctx(m);
    if (n > ctx) {
        cli_error("the prompt has %d tokens but the context holds %d: use a shorter prompt or a larger --ctx (at most %d)", n, ctx,
                  info.n_ctx_train);
        goto done;
    }
    llamac_error err = {{0}};
    llamac_session_params sp = {.n_ctx = n, .n_threads = n_threads, .kv_type = kv_type};
    if (!(s = llamac_session_create(m, &sp, &err))) {
        cli_error("%s", err.message);
        goto done;
    }
    const float *logits = llamac_session_eval(s, ids, n, &err);
    if (!logits) {
        cli_error("%s", err.message);
        goto done;
    }
    /* Printed by hand: 9 significant digits round-trip an f32 exactly, and 128k numbers through a
     * JSON tree would cost more than the forward pass. */
    fputs("{\"prompt_ids\": [", stdout);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
    fputs("], \"logits\": [", stdout);
    if (top > 0) {
        int k = top < info.n_vocab ? top : info.n_vocab;
        int *order = malloc((size_t)info.n_vocab * sizeof *order);
        if (!order) {
            cli_error("out of memory");
            goto done;
        }
        for (int i = 0; i < info.n_vocab; i++) order[i] = i;
        sort_logits = logits;
        qsort(order, (size_t)info.n_vocab, sizeof *order, by_logit_desc);
        for (int j = 0; j < k; j++) printf("%s[%d, %.9g]", j ? ", " : "", order[j], logits[order[j]]);
        free(order);
    } else {
        for (int i = 0; i < info.n_vocab; i++) printf("%s%.9g", i ? ", " : "", logits[i]);
    }
    puts("]}");
    rc = 0;
done:
    free(ids);
    llamac_session_free(s);
    llamac_model_free(m);
    return rc;
}
