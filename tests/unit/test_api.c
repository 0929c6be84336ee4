/* The public C API, end to end, against the golden greedy output of llama2.c's run.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/stat.h>

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

/* ---- writing models: llamac_model_save, llamac_model_synth, and what info reads back ---------- */

static char tmp_dir[4096];

static void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/test_api_%s", tmp_dir, name);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Bytes of a whole file (the test's own small outputs), NULL-terminated buffer left to the caller. */
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

typedef struct save_seen {
    int calls;
    uint64_t sum_bytes, last_done, last_total;
    int cancel_after; /* 0: never */
    bool bad_name;
} save_seen;

static bool on_saved(void *user, const llamac_tensor_info *t, uint64_t done, uint64_t total) {
    save_seen *s = user;
    s->calls++;
    s->sum_bytes += t->bytes;
    if (strstr(t->name, ".weight") == NULL || !t->type || t->cols <= 0 || t->rows <= 0) s->bad_name = true;
    s->last_done = done;
    s->last_total = total;
    return s->cancel_after == 0 || s->calls < s->cancel_after;
}

/* Kept types: the file loads back with the same matrices (name, type, shape, bytes) as the source. */
static void test_save_keeps_tensors(void **state) {
    (void)state;
    char out[4200];
    tmp_path(out, sizeof out, "keep.gguf");
    llamac_error err = {{0}};
    llamac_model *a = llamac_model_load(model_path, NULL, &err);
    assert_non_null(a);
    save_seen seen = {0};
    llamac_save_params sp = {.n_threads = 2, .progress = on_saved, .user = &seen};
    llamac_save_stats st;
    if (!llamac_model_save(a, out, &sp, &st, &err)) fail_msg("save: %s", err.message);
    assert_int_equal(seen.calls, st.n_tensors);
    assert_false(seen.bad_name);
    assert_true(seen.sum_bytes == st.bytes && seen.last_done == st.bytes && seen.last_total == st.bytes);
    assert_null(st.file_type); /* no type asked: no mix recorded */
    llamac_model *b = llamac_model_load(out, NULL, &err);
    if (!b) fail_msg("load back: %s", err.message);
    assert_int_equal(llamac_model_n_tensors(a), llamac_model_n_tensors(b));
    llamac_tensor_info ta, tb;
    for (int i = 0; llamac_model_tensor(a, i, &ta); i++) {
        assert_true(llamac_model_tensor(b, i, &tb));
        assert_string_equal(ta.name, tb.name);
        assert_string_equal(ta.type, tb.type);
        assert_true(ta.cols == tb.cols && ta.rows == tb.rows && ta.bytes == tb.bytes && ta.tied == tb.tied);
    }
    /* every tensor of the file, matrices and norms, written: the type mixes agree */
    llamac_type_share xa[64], xb[64];
    int na = llamac_model_type_mix(a, xa, 64), nb = llamac_model_type_mix(b, xb, 64);
    assert_int_equal(na, nb);
    int n_tensors = 0;
    uint64_t bytes = 0;
    for (int k = 0; k < na; k++) {
        assert_string_equal(xa[k].type, xb[k].type);
        assert_true(xa[k].n_tensors == xb[k].n_tensors && xa[k].bytes == xb[k].bytes && xa[k].n_elements == xb[k].n_elements);
        n_tensors += xa[k].n_tensors;
        bytes += xa[k].bytes;
    }
    assert_int_equal(n_tensors, st.n_tensors);
    assert_true(bytes == st.bytes);
    llamac_model_free(b);
    llamac_model_free(a);
    remove(out);
}

/* A type: every matrix in it (rows not a multiple of Q8_0's 32 values fall back to f16, as
 * llama-quantize does: stories260K's ffn_down has rows of 172), llama.cpp's file type recorded
 * (LLAMA_FTYPE_MOSTLY_Q8_0 = 7), norms in f32 (two per layer and the output norm). From a llama2.c
 * .bin, which records no file type. */
static void test_save_quantizes(void **state) {
    (void)state;
    char out[4200];
    tmp_path(out, sizeof out, "q8.gguf");
    llamac_error err = {{0}};
    llamac_model_params mp = {.tokenizer_path = tok_path};
    llamac_model *a = llamac_model_load(bin_path, &mp, &err);
    assert_non_null(a);
    assert_int_equal(llamac_model_file_type(a, NULL), -1);
    llamac_save_params sp = {.type = "Q8_0", .n_threads = 1};
    llamac_save_stats st;
    if (!llamac_model_save(a, out, &sp, &st, NULL)) fail_msg("save failed");
    assert_non_null(st.file_type);
    assert_int_equal(st.n_threads, 1);
    llamac_model *b = llamac_model_load(out, NULL, &err);
    if (!b) fail_msg("load back: %s", err.message);
    const char *ft_name = NULL;
    assert_int_equal(llamac_model_file_type(b, &ft_name), 7);
    assert_non_null(ft_name);
    assert_string_equal(ft_name, st.file_type);
    llamac_tensor_info ti;
    int n_q8 = 0, n_f16 = 0;
    for (int i = 0; llamac_model_tensor(b, i, &ti); i++) {
        if (ti.tied) continue;
        assert_string_equal(ti.type, ti.cols % 32 == 0 ? "q8_0" : "f16");
        if (ti.cols % 32 == 0) n_q8++;
        else n_f16++;
    }
    assert_true(n_q8 > 0 && n_f16 > 0);
    llamac_model_info info;
    llamac_model_get_info(b, &info);
    llamac_type_share x[64];
    int n = llamac_model_type_mix(b, x, 64);
    assert_int_equal(n, 3);
    assert_string_equal(x[0].type, "q8_0"); /* the biggest share first */
    assert_int_equal(x[0].n_tensors, n_q8);
    assert_true(x[0].bytes * 32 == x[0].n_elements * 34); /* Q8_0: 34 bytes per 32 values */
    for (int k = 1; k < 3; k++) {
        assert_true(x[k].bytes <= x[k - 1].bytes);
        if (!strcmp(x[k].type, "f32")) assert_int_equal(x[k].n_tensors, 1 + 2 * info.n_layers);
        else assert_true(!strcmp(x[k].type, "f16") && x[k].n_tensors == n_f16 && x[k].bytes == 2 * x[k].n_elements);
    }
    assert_int_equal(llamac_model_type_mix(b, x, 1), 3); /* the count, whatever the room */
    llamac_model_free(b);
    llamac_model_free(a);
    remove(out);
}

static void test_save_refusals(void **state) {
    (void)state;
    char out[4200];
    tmp_path(out, sizeof out, "refused.gguf");
    remove(out);
    llamac_error err = {{0}};
    llamac_model *a = llamac_model_load(model_path, NULL, &err);
    assert_non_null(a);
    assert_true(llamac_save_type_known("Q4_K_M") && llamac_save_type_known("f16"));
    assert_false(llamac_save_type_known("q3_k") || llamac_save_type_known(NULL) || llamac_save_type_known(""));
    assert_non_null(strstr(llamac_save_type_names(), "q4_k_m"));
    llamac_save_params sp = {.type = "q3_k"};
    assert_false(llamac_model_save(a, out, &sp, NULL, &err));
    assert_non_null(strstr(err.message, "unknown type 'q3_k'"));
    sp = (llamac_save_params){.format = "safetensors"};
    assert_false(llamac_model_save(a, out, &sp, NULL, &err));
    assert_non_null(strstr(err.message, "unknown format"));
    sp = (llamac_save_params){.n_threads = -1};
    assert_false(llamac_model_save(a, out, &sp, NULL, &err));
    assert_true(err.message[0] && !strchr(err.message, '\n'));
    assert_false(llamac_model_save(a, NULL, NULL, NULL, NULL)); /* err NULL allowed */
    assert_false(llamac_model_save(a, tmp_dir, NULL, NULL, &err)); /* a folder is not an output file */
    assert_true(err.message[0] != 0);
    /* a cancelled save leaves nothing behind */
    save_seen seen = {.cancel_after = 3};
    sp = (llamac_save_params){.progress = on_saved, .user = &seen};
    assert_false(llamac_model_save(a, out, &sp, NULL, &err));
    assert_non_null(strstr(err.message, "cancelled"));
    assert_int_equal(seen.calls, 3);
    assert_false(file_exists(out));
    llamac_model_free(a);
}

static void synth_params(llamac_synth_params *p, const char *vocab) {
    *p = (llamac_synth_params){.name = "test synth", .n_layers = 2, .dim = 64, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 96,
                               .n_ctx_train = 256, .tied = false, .rope_theta = 10000.0f, .tokenizer_path = vocab, .type = "f16",
                               .seed = 7};
}

/* The shapes asked for, read back by the loader; the same seed, the same bytes; another seed, others. */
static void test_synth(void **state) {
    (void)state;
    char vocab[4200], a_path[4200], b_path[4200], c_path[4200];
    const char *shared = getenv("LLAMAC_SHARED");
    snprintf(vocab, sizeof vocab, "%s/models/llama2-tokenizer/tokenizer.model", shared ? shared : "../shared");
    tmp_path(a_path, sizeof a_path, "synth_a.gguf");
    tmp_path(b_path, sizeof b_path, "synth_b.gguf");
    tmp_path(c_path, sizeof c_path, "synth_c.gguf");
    llamac_error err = {{0}};
    llamac_synth_params p;
    synth_params(&p, vocab);
    if (!llamac_model_synth(a_path, &p, &err)) fail_msg("synth: %s", err.message);
    assert_true(llamac_model_synth(b_path, &p, NULL));
    p.seed = 8;
    assert_true(llamac_model_synth(c_path, &p, &err));
    size_t na, nb, nc;
    char *a = slurp(a_path, &na), *b = slurp(b_path, &nb), *c = slurp(c_path, &nc);
    assert_true(a && b && c && na == nb && na == nc);
    assert_memory_equal(a, b, na);
    assert_true(memcmp(a, c, na) != 0);
    free(a);
    free(b);
    free(c);
    llamac_model *m = llamac_model_load(a_path, NULL, &err);
    if (!m) fail_msg("load synth: %s", err.message);
    llamac_model_info in;
    llamac_model_get_info(m, &in);
    assert_true(in.n_layers == 2 && in.dim == 64 && in.n_heads == 4 && in.n_kv_heads == 2 && in.ffn_dim == 96);
    assert_true(in.n_ctx_train == 256 && in.n_vocab == 32000 && !in.tied_output && !in.has_rope_freqs);
    assert_string_equal(in.name, "test synth");
    llamac_tensor_info ti;
    for (int i = 0; llamac_model_tensor(m, i, &ti); i++) assert_string_equal(ti.type, "f16");
    llamac_model_free(m);
    remove(a_path);
    remove(b_path);
    remove(c_path);
    /* refusals, before any file is made */
    synth_params(&p, vocab);
    p.n_heads = 5; /* 64 is not 5 heads */
    assert_false(llamac_model_synth(a_path, &p, &err));
    assert_non_null(strstr(err.message, "heads"));
    synth_params(&p, vocab);
    p.format = "onnx";
    assert_false(llamac_model_synth(a_path, &p, &err));
    assert_non_null(strstr(err.message, "unknown format 'onnx'"));
    synth_params(&p, vocab);
    p.type = "q5_k";
    assert_false(llamac_model_synth(a_path, &p, &err));
    assert_non_null(strstr(err.message, "unknown type"));
    synth_params(&p, "/nonexistent/tokenizer.model");
    assert_false(llamac_model_synth(a_path, &p, &err));
    assert_non_null(strstr(err.message, "/nonexistent/tokenizer.model"));
    synth_params(&p, vocab);
    p.n_layers = 0;
    assert_false(llamac_model_synth(a_path, &p, NULL));
    assert_false(llamac_model_synth(a_path, NULL, NULL));
    assert_false(file_exists(a_path));
}

/* Known well- and ill-formed UTF-8 (RFC 3629). */
static void test_utf8_valid(void **state) {
    (void)state;
    assert_true(llamac_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert_true(llamac_utf8_valid("", 0));
    assert_false(llamac_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(llamac_utf8_valid("\xed\xa0\x80", 3));     /* surrogate U+D800 */
    assert_false(llamac_utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(llamac_utf8_valid("\xe2\x82", 2));         /* truncated */
    assert_false(llamac_utf8_valid("\x80", 1));             /* lone continuation */
}

int main(void) {
    paths();
    const char *tmp = getenv("LLAMAC_TMP");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", tmp ? tmp : "/tmp");
    mkdir(tmp_dir, 0777); /* ctest's LLAMAC_TMP may not exist yet; an existing one is fine */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_gguf),
        cmocka_unit_test(test_golden_bin),
        cmocka_unit_test(test_batch_equals_sequential),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_save_keeps_tensors),
        cmocka_unit_test(test_save_quantizes),
        cmocka_unit_test(test_save_refusals),
        cmocka_unit_test(test_synth),
        cmocka_unit_test(test_utf8_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
