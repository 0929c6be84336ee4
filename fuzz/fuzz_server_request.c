/*
 * Fast libFuzzer target for what `llamac serve` makes of a request body (llc_server_interpret: the
 * routing, the strict JSON reader and the request parsing llc_serve runs, without a socket). The first
 * byte picks the route (/v1/completions, /v1/chat/completions, /tokenize, /detokenize), the rest is
 * the body, given by length. The model is stories260K, loaded once.
 *
 * Every answer must be one JSON object the strict reader accepts, valid UTF-8 whenever the body is:
 * an error in OpenAI's shape with a known status, or /tokenize's ids inside the vocabulary (as many as
 * its count) and /detokenize's text. An accepted generation's engine requests must hold what the
 * server promises (prompt ids in the vocabulary, prompt plus max_tokens within the context, stop
 * strings and logit biases within the limits) and be accepted by a real engine, then cancelled.
 *
 *   FUZZ: speed=fast dict=server_request,json seeds=server_request
 *
 *   scripts/fuzz.sh server_request
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "fuzz_common.h"
#include "server/server.h"

static llamac_model *model;
static llamac_engine *engine;
static int n_ctx, n_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char exe_rel[4096];
    const char *dirs[FUZZ_N_SHARED];
    fuzz_shared_dirs(dirs, exe_rel);
    llamac_error err = {{0}};
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0] && !model; d++) {
        if (!dirs[d]) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/models/stories260K/stories260K.gguf", dirs[d]);
        model = llamac_model_load(p, NULL, &err);
    }
    if (!model) {
        fprintf(stderr, "fuzz_server_request: cannot load stories260K.gguf (set LLAMAC_SHARED): %s\n", err.message);
        abort();
    }
    /* 128 choices (the most one request may have) of the whole context fit */
    llamac_engine_params ep = {.n_threads = 1, .max_seqs = 128};
    if (!(engine = llamac_engine_create(model, &ep, &err))) {
        fprintf(stderr, "fuzz_server_request: %s\n", err.message);
        abort();
    }
    llamac_engine_stats st;
    llamac_engine_get_stats(engine, &st);
    n_ctx = st.n_ctx;
    llamac_model_info info;
    llamac_model_get_info(model, &info);
    n_vocab = llamac_tokenizer_n_vocab(llamac_model_tokenizer(model));
    if (info.n_vocab < n_vocab) n_vocab = info.n_vocab;
    return 0;
}

typedef struct accepted {
    int ids[128];
    int n;
} accepted;

static void on_request(void *ctx, const llamac_request *q, bool stream) {
    (void)stream;
    accepted *a = ctx;
    if (a->n >= 128) abort(); /* the server allows at most 128 choices */
    if (q->n_prompt < 1 || q->n_prompt + (q->max_tokens ? q->max_tokens : 1) > n_ctx || q->max_tokens < 0) abort();
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= n_vocab) abort();
    if (q->n_stop < 0 || q->n_stop > LLAMAC_MAX_STOP) abort();
    for (int i = 0; i < q->n_stop; i++) {
        size_t len = strlen(q->stop[i]);
        if (!len || len > LLAMAC_MAX_STOP_LEN) abort();
    }
    for (int i = 0; i < q->n_logit_bias; i++)
        if (q->logit_bias_ids[i] < 0 || q->logit_bias_ids[i] >= n_vocab || !(fabsf(q->logit_bias[i]) <= 100)) abort();
    if (q->top_logprobs < 0 || q->top_logprobs > LLAMAC_MAX_TOP_LOGPROBS || (q->top_logprobs && !q->logprobs)) abort();
    if (!isfinite(q->sampling.temperature) || !isfinite(q->presence_penalty) || !isfinite(q->frequency_penalty)) abort();
    /* what the server accepts, the engine must accept too (else the client learns of it after queueing) */
    llamac_error err = {{0}};
    int id = llamac_engine_submit(engine, q, &err);
    if (id < 0) {
        fprintf(stderr, "fuzz_server_request: the server accepted what the engine refuses: %s\n", err.message);
        abort();
    }
    a->ids[a->n++] = id;
}

static const char *const routes[] = {"/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path = routes[data[0] & 3];
    /* a copy of exactly the body, so reading one byte past it is caught by ASan */
    size_t n = size - 1;
    char *body = malloc(n ? n : 1);
    if (!body) return 0;
    memcpy(body, data + 1, n);
    accepted a = {.n = 0};
    char *answer = NULL;
    int status = llc_server_interpret(model, "stories", n_ctx, path, body, n, &answer, on_request, &a);
    bool body_utf8 = fuzz_utf8_valid((const unsigned char *)body, n);
    free(body);
    if (status < 0) return 0; /* out of memory */
    for (int i = 0; i < a.n; i++) llamac_engine_cancel(engine, a.ids[i]);
    if (a.n) {
        int n_ev = 0;
        llamac_error err = {{0}};
        const llamac_event *ev = llamac_engine_step(engine, &n_ev, &err);
        if (!ev && n_ev) abort();
        for (int i = 0; i < n_ev; i++)
            if (ev[i].finish != LLAMAC_FINISH_CANCELLED) abort();
    }
    if (status == 200 && (data[0] & 3) < 2) {
        if (answer || a.n < 1) abort();
        return 0;
    }
    if (status != 200 && status != 400 && status != 404 && status != 500) abort();
    if (status != 200 && a.n) abort();
    if (!answer) abort();
    size_t len = strlen(answer);
    if (body_utf8 && !fuzz_utf8_valid((const unsigned char *)answer, len)) abort();
    llamac_error err = {{0}};
    cJSON *v = llc_json_parse(answer, len, "answer", &err);
    if (!v || !cJSON_IsObject(v)) abort();
    if (status != 200) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "error");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        if (!cJSON_IsString(msg) || !msg->valuestring[0] || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "type"))) abort();
    } else if ((data[0] & 3) == 2) {
        const cJSON *count = cJSON_GetObjectItemCaseSensitive(v, "count"), *toks = cJSON_GetObjectItemCaseSensitive(v, "tokens");
        if (!cJSON_IsNumber(count) || !cJSON_IsArray(toks) || count->valueint != cJSON_GetArraySize(toks)) abort();
        const cJSON *t;
        cJSON_ArrayForEach(t, toks)
            if (!cJSON_IsNumber(t) || t->valueint < 0 || t->valueint >= n_vocab) abort();
    } else if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "prompt"))) {
        abort();
    }
    cJSON_Delete(v);
    free(answer);
    return 0;
}
