/* The public C API, end to end, against the golden greedy output of llama2.c's run.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "llamac.h"

static char model_path[4096], bin_path[4096], tok_path[4096], golden_path[4096];

static void paths(void) {
    const char *shared = getenv("LLAMAC_SHARED");
    if (!shared) shared = "../shared";
    snprintf(model_path, sizeof model_path, "%s/models/stories260K/stories260K.gguf", shared);
    snprintf(bin_path, sizeof bin_path, "%s/models/stories260K/stories260K.bin", shared);
    snprintf(tok_path, sizeof tok_path, "%s/models/stories260K/tok512.bin", shared);
    snprintf(golden_path, sizeof golden_path, "%s/testdata/golden/stories260K-greedy.jsonl", shared);
}

/* First golden line's prompt and text, pulled out without a JSON library: the values hold \" and \n
 * escapes only. */
static void golden_first(char *prompt, size_t pcap, char *text, size_t tcap) {
    FILE *fp = fopen(golden_path, "r");
    assert_non_null(fp);
    char line[8192];
    assert_non_null(fgets(line, sizeof line, fp));
    fclose(fp);
    const char *keys[2] = {"\"prompt\": \"", "\"text\": \""};
    char *outs[2] = {prompt, text};
    size_t caps[2] = {pcap, tcap};
    for (int k = 0; k < 2; k++) {
        const char *p = strstr(line, keys[k]);
        assert_non_null(p);
        p += strlen(keys[k]);
        size_t n = 0;
        for (; *p && *p != '"' && n + 1 < caps[k]; p++) {
            if (*p == '\\') {
                p++;
                outs[k][n++] = *p == 'n' ? '\n' : *p;
            } else {
                outs[k][n++] = *p;
            }
        }
        outs[k][n] = 0;
    }
}

static void generate_greedy(const char *path, const char *tokenizer, const char *prompt, char *out, size_t cap, int n_steps) {
    llamac_error err = {{0}};
    llamac_model_params mp = {.tokenizer_path = tokenizer};
    llamac_model *m = llamac_model_load(path, &mp, &err);
    if (!m) fail_msg("load: %s", err.message);
    const llamac_tokenizer *tok = llamac_model_tokenizer(m);
    int32_t ids[512];
    int n = llamac_tokenize(tok, prompt, strlen(prompt), true, false, ids, 512, &err);
    assert_true(n > 1 && n < 512);
    assert_int_equal(ids[0], llamac_tokenizer_bos(tok));
    llamac_session_params sp = {.n_ctx = 256, .n_threads = 2};
    llamac_session *s = llamac_session_create(m, &sp, &err);
    assert_non_null(s);
    llamac_sampler_params smp = llamac_sampler_defaults();
    smp.temperature = 0;
    llamac_sampler *sampler = llamac_sampler_create(&smp, llamac_tokenizer_n_vocab(tok), &err);
    assert_non_null(sampler);
    llamac_detokenizer dt;
    llamac_detokenizer_init(&dt, tok);
    size_t len = 0;
    char piece[256];
    for (int i = 0; i < n; i++) {
        size_t k = llamac_detokenize(&dt, ids[i], piece, sizeof piece);
        assert_true(len + k < cap);
        memcpy(out + len, piece, k);
        len += k;
    }
    const float *logits = llamac_session_eval(s, ids, n, &err);
    assert_non_null(logits);
    /* run.c counts steps from the first prompt token: 200 steps = prompt + continuation */
    for (int step = n; step < n_steps; step++) {
        int32_t next = llamac_sampler_sample(sampler, logits);
        if (llamac_tokenizer_is_eog(tok, next)) break;
        size_t k = llamac_detokenize(&dt, next, piece, sizeof piece);
        assert_true(len + k < cap);
        memcpy(out + len, piece, k);
        len += k;
        logits = llamac_session_eval(s, &next, 1, &err);
        assert_non_null(logits);
    }
    out[len] = 0;
    llamac_sampler_free(sampler);
    llamac_session_free(s);
    llamac_model_free(m);
}

static void test_golden_gguf(void **state) {
    (void)state;
    char prompt[512], text[8192], out[16384];
    golden_first(prompt, sizeof prompt, text, sizeof text);
    text[strlen(text) - 1] = 0; /* run.c's final newline */
    generate_greedy(model_path, NULL, prompt, out, sizeof out, 210);
    assert_true(strncmp(out, text, strlen(text)) == 0);
}

static void test_golden_bin(void **state) {
    (void)state;
    char prompt[512], text[8192], out[16384];
    golden_first(prompt, sizeof prompt, text, sizeof text);
    text[strlen(text) - 1] = 0;
    generate_greedy(bin_path, tok_path, prompt, out, sizeof out, 210);
    assert_true(strncmp(out, text, strlen(text)) == 0);
}

/* The prompt as one batch and the prompt token by token must give the same last logits: the two
 * paths share kernels but not the batching of attention and matmuls. */
static void test_batch_equals_sequential(void **state) {
    (void)state;
    llamac_error err = {{0}};
    llamac_model *m = llamac_model_load(model_path, NULL, &err);
    assert_non_null(m);
    int32_t ids[64];
    const char *text = "Lily and Tom went to the park with a big red ball";
    int n = llamac_tokenize(llamac_model_tokenizer(m), text, strlen(text), true, false, ids, 64, &err);
    assert_true(n > 5);
    llamac_session_params sp = {.n_ctx = 64, .n_threads = 2};
    llamac_session *a = llamac_session_create(m, &sp, &err), *b = llamac_session_create(m, &sp, &err);
    int nv = llamac_tokenizer_n_vocab(llamac_model_tokenizer(m));
    float *la = malloc((size_t)nv * sizeof *la);
    memcpy(la, llamac_session_eval(a, ids, n, &err), (size_t)nv * sizeof *la);
    const float *lb = NULL;
    for (int i = 0; i < n; i++) lb = llamac_session_eval(b, &ids[i], 1, &err);
    for (int i = 0; i < nv; i++) assert_float_equal(la[i], lb[i], 1e-4);
    /* truncate and re-run the tail: same logits again */
    llamac_session_truncate(b, n - 3);
    assert_int_equal(llamac_session_pos(b), n - 3);
    lb = llamac_session_eval(b, ids + n - 3, 3, &err);
    for (int i = 0; i < nv; i++) assert_float_equal(la[i], lb[i], 1e-4);
    free(la);
    llamac_session_free(a);
    llamac_session_free(b);
    llamac_model_free(m);
}

static void test_errors(void **state) {
    (void)state;
    llamac_error err = {{0}};
    assert_null(llamac_model_load("/nonexistent/model.gguf", NULL, &err));
    assert_non_null(strstr(err.message, "/nonexistent/model.gguf"));
    assert_null(llamac_model_load(tok_path, NULL, &err)); /* a tokenizer is not a model */
    assert_true(err.message[0] != 0 && strchr(err.message, '\n') == NULL);
    llamac_model *m = llamac_model_load(model_path, NULL, NULL); /* a NULL error pointer is allowed */
    assert_non_null(m);
    llamac_session_params sp = {.n_ctx = 4, .n_threads = 1};
    llamac_session *s = llamac_session_create(m, &sp, &err);
    int32_t ids[5] = {1, 2, 3, 4, 5};
    assert_null(llamac_session_eval(s, ids, 5, &err)); /* more than the context */
    assert_non_null(strstr(err.message, "context"));
    int32_t bad = 100000;
    assert_null(llamac_session_eval(s, &bad, 1, &err));
    assert_non_null(strstr(err.message, "vocabulary"));
    assert_null(llamac_session_eval(s, ids, 0, &err));
    assert_non_null(llamac_session_eval(s, ids, 4, &err));
    assert_null(llamac_session_eval(s, ids, 1, &err)); /* full now */
    llamac_session_free(s);
    llamac_sampler_params bad_p = llamac_sampler_defaults();
    bad_p.top_p = 0;
    assert_null(llamac_sampler_create(&bad_p, 512, &err));
    llamac_model_free(m);
}

/* Same seed, same tokens; the distribution follows the softmax of the logits. */
static void test_sampler(void **state) {
    (void)state;
    llamac_error err = {{0}};
    float logits[4] = {0.0f, 1.0f, 2.0f, -30.0f};
    llamac_sampler_params p = llamac_sampler_defaults();
    p.temperature = 1;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.seed = 42;
    llamac_sampler *a = llamac_sampler_create(&p, 4, &err), *b = llamac_sampler_create(&p, 4, &err);
    int counts[4] = {0};
    for (int i = 0; i < 20000; i++) {
        int32_t x = llamac_sampler_sample(a, logits);
        assert_int_equal(x, llamac_sampler_sample(b, logits));
        counts[x]++;
    }
    /* softmax(0,1,2) = 0.090, 0.245, 0.665 */
    assert_true(counts[0] > 1500 && counts[0] < 2100);
    assert_true(counts[1] > 4500 && counts[1] < 5300);
    assert_true(counts[2] > 12800 && counts[2] < 13800);
    assert_int_equal(counts[3], 0);
    llamac_sampler_free(a);
    llamac_sampler_free(b);
    /* top-k 1 is greedy; min-p 0.5 keeps only tokens within 2x of the best */
    p.top_k = 1;
    a = llamac_sampler_create(&p, 4, &err);
    for (int i = 0; i < 100; i++) assert_int_equal(llamac_sampler_sample(a, logits), 2);
    llamac_sampler_free(a);
    p.top_k = 0;
    p.min_p = 0.5f;
    a = llamac_sampler_create(&p, 4, &err);
    for (int i = 0; i < 100; i++) assert_int_equal(llamac_sampler_sample(a, logits), 2);
    llamac_sampler_free(a);
    /* top-p 0.5: the best token alone holds 0.665 */
    p.min_p = 0;
    p.top_p = 0.5f;
    a = llamac_sampler_create(&p, 4, &err);
    for (int i = 0; i < 100; i++) assert_int_equal(llamac_sampler_sample(a, logits), 2);
    llamac_sampler_free(a);
    /* repetition penalty: a penalized best token loses greedy selection */
    p.temperature = 0;
    p.top_p = 1;
    p.repeat_penalty = 4.0f;
    a = llamac_sampler_create(&p, 4, &err);
    llamac_sampler_accept(a, 2);
    assert_int_equal(llamac_sampler_sample(a, logits), 1); /* 2/4 = 0.5 < 1 */
    llamac_sampler_free(a);
    /* a broken model's NaN and infinite logits: a valid id, never a crash */
    float odd[6] = {NAN, 1.0f, -INFINITY, NAN, 3.0f, -INFINITY};
    p = llamac_sampler_defaults();
    p.top_k = 0;
    a = llamac_sampler_create(&p, 6, &err);
    for (int i = 0; i < 200; i++) {
        int32_t x = llamac_sampler_sample(a, odd);
        assert_true(x == 1 || x == 4);
    }
    llamac_sampler_free(a);
    float all_nan[3] = {NAN, NAN, NAN};
    p.temperature = 0;
    a = llamac_sampler_create(&p, 3, &err);
    assert_true(llamac_sampler_sample(a, all_nan) < 3);
    llamac_sampler_free(a);
}

int main(void) {
    paths();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_gguf),
        cmocka_unit_test(test_golden_bin),
        cmocka_unit_test(test_batch_equals_sequential),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sampler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
